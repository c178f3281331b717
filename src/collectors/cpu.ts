/**
 * cpu/: the CPU times of <procRoot>/stat.
 *
 *   cpu/cpuN/<time>    one source per "cpuN" line (the online CPUs, as the kernel lists them): user nice system
 *                      idle iowait irq softirq steal guest guest_nice, cumulative counters in USER_HZ ticks
 *                      (Linux fixes USER_HZ at 100 for userspace, whatever CONFIG_HZ is), 0644: `echo 0 >` records
 *                      a baseline and later reads show the ticks since.
 *   cpu/cpuN/busy      user + nice + system + irq + softirq + steal: every tick that was not idle or iowait.
 *                      guest and guest_nice are NOT added: the kernel already counts guest time in user (and
 *                      guest_nice in nice), so adding them would count it twice.
 *   cpu/<time>, busy   sums over every CPU below (aggregates): cpu/user is what /proc/stat's machine-wide
 *                      "cpu" line says, computed from the cpuN lines. That line itself is not read: summing it
 *                      with the cpuN lines would count every tick twice. On a real kernel the two can differ a
 *                      little: the kernel converts the machine-wide nanosecond sum to ticks once, but truncates
 *                      each CPU's line separately, so the sum of the cpuN lines may be up to (CPUs - 1) ticks
 *                      below the "cpu" line per field; and the "cpu" line also covers *possible* CPUs that are
 *                      offline now (their past ticks), while cpu/ sums the online ones that the tree shows.
 *   cpu/busy_max       the largest busy of any one CPU (aggregate 'max'): how hard the busiest CPU worked.
 *
 * busy_max needs a definition of its own (an aggregate combines the values of its own definition, and a
 * definition has one aggregation). It lives in a second one-value schema that each CPU adds as a *hidden*
 * group reading the same base: cpu/busy_max aggregates it, while cpuN/ shows no busy_max of its own (it would
 * only repeat busy). It keeps its own baseline: `echo 0 > cpu/busy_max` restarts the maximum from now on every
 * CPU, `echo 0 > cpu/busy` restarts the sum, and neither touches the other.
 *
 * Freshness: one parse of /proc/stat serves every value of every CPU within options.freshnessMs (see
 * common.ts). Membership follows the same parse: the refresher re-syncs the CPUs whenever a new parse has
 * been made, so the CPUs in the tree are always those of the parse the values are read from (a separately
 * throttled refresher could lag one window behind and make an aggregate read a CPU that is already gone).
 * A CPU going offline disappears from cpu/ (reads of it then give ENOENT) and reappears when it comes back
 * online, keeping the baselines it had: the kernel keeps an offline CPU's counters, so "ticks since the
 * clear" stays true across the offline period.
 */
import { counterType, LiveValues, Schema, Source, StatsError, type ValueSpec } from '../model/index.js';
import { KernelFile, kernelPath, syncSubordinates, type Collector, type CollectorOptions } from './common.js';

/** The per-CPU fields of /proc/stat, in the kernel's order. */
export const CPU_TIMES = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', 'guest', 'guest_nice'] as const;

export const CPU_TIME_UNIT = 'USER_HZ ticks (1/100 s)';

const DESCRIPTIONS: Readonly<Record<(typeof CPU_TIMES)[number], string>> = {
  user: 'time in user mode (includes guest)',
  nice: 'time in user mode at low priority (nice > 0; includes guest_nice)',
  system: 'time in kernel mode',
  idle: 'time idle',
  iowait: 'time idle while waiting for I/O (unreliable: an idle CPU does not wait for anything)',
  irq: 'time servicing hardware interrupts',
  softirq: 'time servicing softirqs',
  steal: 'time stolen by the hypervisor for other guests',
  guest: 'time running a virtual CPU of a guest (already counted in user)',
  guest_nice: 'time running a niced guest (already counted in nice)',
};

/**
 * node_exporter's names: the eight times that add up to the CPU's time as node_cpu_seconds_total{mode},
 * guest and guest_nice (already inside user and nice) as node_cpu_guest_seconds_total; ticks / 100 exactly.
 */
const TICKS_TO_SECONDS = { exp10: -2 } as const;
function exposure(name: (typeof CPU_TIMES)[number]): ValueSpec['expose'] {
  if (name === 'guest' || name === 'guest_nice') {
    return { name: 'node_cpu_guest_seconds_total', type: 'counter', labels: { mode: name === 'guest' ? 'user' : 'nice' }, scale: TICKS_TO_SECONDS, help: 'Seconds the CPUs spent in guests (VMs) for each mode.' };
  }
  return { name: 'node_cpu_seconds_total', type: 'counter', labels: { mode: name }, scale: TICKS_TO_SECONDS, help: 'Seconds the CPUs spent in each mode.' };
}

/** Position of busy in a parsed CPU line: right after the kernel's fields. */
const BUSY = CPU_TIMES.length;
/** user nice system irq softirq steal: what busy adds up. */
const BUSY_PARTS = [0, 1, 2, 5, 6, 7] as const;

/** One parse of /proc/stat: per "cpuN", its ten times followed by busy. */
export type CpuTimes = ReadonlyMap<string, readonly bigint[]>;

/** Definition name -> position in a parsed line. busy_max reads busy (its own baseline: see above). */
const FIELD_INDEX: ReadonlyMap<string, number> = new Map<string, number>([
  ...CPU_TIMES.map((name, i) => [name, i] as [string, number]),
  ['busy', BUSY],
  ['busy_max', BUSY],
]);

/** The per-CPU values; cpu/ adds the same schema as aggregates (sum), so cpu/<time> is the total. */
export const cpuSchema = new Schema([
  ...CPU_TIMES.map(
    (name): ValueSpec => ({ name, type: counterType, aggr: 'sum', unit: CPU_TIME_UNIT, description: DESCRIPTIONS[name], expose: exposure(name) }),
  ),
  {
    name: 'busy',
    type: counterType,
    aggr: 'sum',
    unit: CPU_TIME_UNIT,
    description: 'time not idle: user + nice + system + irq + softirq + steal (guest is inside user already)',
    expose: false, // a sum of the modes: PromQL sums them
  },
]);

/** Hidden in each CPU, aggregated (max) at cpu/. */
export const cpuBusyMaxSchema = new Schema([
  {
    name: 'busy_max',
    type: counterType,
    aggr: 'max',
    unit: CPU_TIME_UNIT,
    description: 'busy of the busiest CPU (max over CPUs; each CPU\'s busy since its last busy_max clear)',
    expose: false,
  },
]);

const CPU_NAME = /^cpu\d+$/;

/**
 * The "cpuN" lines of /proc/stat. The machine-wide "cpu" line and every other line (intr, ctxt, softirq, …)
 * are skipped without being split: on a large host the intr line alone has thousands of numbers. Fields an
 * older kernel does not print (steal before 2.6.11, guest before 2.6.24, guest_nice before 2.6.33) read as 0.
 */
export function parseCpuTimes(text: string): CpuTimes {
  const cpus = new Map<string, bigint[]>();
  for (let at = 0; at < text.length; ) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    // "cpu" followed by a digit: not the machine-wide "cpu  " line
    if (text.startsWith('cpu', at) && text.charCodeAt(at + 3) >= 0x30 && text.charCodeAt(at + 3) <= 0x39) {
      const fields = text.slice(at, end).trim().split(/\s+/);
      const name = fields[0];
      if (CPU_NAME.test(name)) {
        const values = new Array<bigint>(BUSY + 1);
        for (let i = 0; i < BUSY; i++) values[i] = i + 1 < fields.length ? BigInt(fields[i + 1]) : 0n;
        let busy = 0n;
        for (const i of BUSY_PARTS) busy += values[i];
        values[BUSY] = BigInt.asUintN(64, busy);
        cpus.set(name, values);
      }
    }
    at = end + 1;
  }
  return cpus;
}

export const cpuCollector: Collector = {
  name: 'cpu',
  description: 'CPU times from /proc/stat per CPU (USER_HZ ticks), with sums and the busiest CPU at cpu/',
  create(options: CollectorOptions): Source {
    const stat = new KernelFile(kernelPath(options.procRoot, 'stat'), parseCpuTimes, options);
    const top = new Source('cpu');
    top.addAggregates(cpuSchema);
    top.addAggregates(cpuBusyMaxSchema);

    // Kept across offline periods (see above); bounded by the number of possible CPUs.
    const bases = new Map<string, LiveValues>();
    const baseOf = (cpu: string): LiveValues => {
      let base = bases.get(cpu);
      if (base === undefined) {
        base = new LiveValues((field) => {
          const values = stat.get().get(cpu);
          if (values === undefined) throw new StatsError('ENOENT', `${cpu} is offline or gone (no "${cpu}" line in ${stat.path})`);
          const i = FIELD_INDEX.get(field);
          if (i === undefined) throw new StatsError('ENOENT', `no CPU time "${field}"`);
          return values[i];
        });
        bases.set(cpu, base);
      }
      return base;
    };
    const makeCpu = (cpu: string): Source => {
      const source = new Source(cpu, { expose: { labels: { cpu: cpu.slice(3) } } });
      const base = baseOf(cpu);
      source.addValues(cpuSchema, { base });
      source.addValues(cpuBusyMaxSchema, { base, hidden: true });
      return source;
    };

    // Re-sync only when KernelFile has made a new parse (at most once per freshness window).
    let synced: CpuTimes | null = null;
    top.setRefresher(() => {
      const cpus = stat.get();
      if (cpus === synced) return;
      synced = cpus;
      syncSubordinates(top, cpus.keys(), makeCpu);
    });
    top.refresh(); // a missing /proc/stat fails here, at start, rather than on the first read
    return top;
  },
};
