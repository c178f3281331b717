/**
 * How values appear in an exposition (Prometheus), declared by whoever defines them: a collector names its
 * values the way node_exporter does once, beside their definitions, and the exporter only follows it.
 * The tree itself keeps the kernel's names and units; only the exposition is renamed and scaled.
 */

/** Exact scaling of a 64-bit integer for the exposition: value × times × 10^exp10, written as a decimal. */
export interface Scale {
  /** An integer factor (512 for sectors to bytes); default 1. */
  readonly times?: number;
  /** A power of ten (-2 for USER_HZ ticks to seconds, -3 for ms, -6 for µs); default 0. */
  readonly exp10?: number;
}

/** The exposition of one definition. Every field is optional: what is left out is inferred from the tree. */
export interface Exposure {
  /** The full sample name (node_cpu_seconds_total); without it the name is inferred from the path. */
  readonly name?: string;
  readonly type?: 'counter' | 'gauge';
  /** HELP text; default the definition's description. */
  readonly help?: string;
  /** Labels of this definition's series (mode="user"), after those of the sources above it. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly scale?: Scale;
}

/** What a source contributes to the exposition of the values at and below it. */
export interface SourceExposure {
  /** Labels of every named (declared) series at or below this source: cpu="0", device="sda". */
  readonly labels?: Readonly<Record<string, string>>;
  /** Name of the label its subordinates get when they are inferred to be instances (op, not fuse). */
  readonly instanceLabel?: string;
}
