/**
 * pressure/<resource>/{some,full}: pressure stall information (PSI, Linux 4.20+ with CONFIG_PSI) from
 * <procRoot>/pressure/{cpu,io,memory}: the "total=" of each line, microseconds during which some (or all
 * non-idle) tasks were stalled on the resource. Counters. The avg10/60/300 ratios are not kept: Prometheus
 * computes rates from the totals. A kernel without PSI gives an empty pressure/.
 */
import { existsSync } from 'node:fs';
import { counterType, LiveValues, Schema, Source, StatsError } from '../model/index.js';
import { KernelFile, kernelPath, type Collector, type CollectorOptions } from './common.js';

const RESOURCES = ['cpu', 'io', 'memory'] as const;

/** "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345": the totals by line kind. */
export function parsePressure(text: string): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const m = /^(some|full)\s.*\btotal=(\d+)/.exec(line);
    if (m !== null) totals.set(m[1], BigInt(m[2]));
  }
  return totals;
}

const US_TO_SECONDS = { exp10: -6 } as const;

/** One schema per resource: node_exporter names each resource's family (cpu full is not exported by 1.5.0). */
function schemaOf(resource: (typeof RESOURCES)[number]): Schema {
  return new Schema([
    {
      name: 'some',
      type: counterType,
      unit: 'microseconds',
      description: `time during which some tasks were stalled on ${resource} (total= of the "some" line)`,
      expose: { name: `node_pressure_${resource}_waiting_seconds_total`, type: 'counter', scale: US_TO_SECONDS, help: `Total time in seconds that processes have waited for ${resource}.` },
    },
    {
      name: 'full',
      type: counterType,
      unit: 'microseconds',
      description: `time during which all non-idle tasks were stalled on ${resource} (total= of the "full" line)`,
      expose: resource === 'cpu' ? false : { name: `node_pressure_${resource}_stalled_seconds_total`, type: 'counter', scale: US_TO_SECONDS, help: `Total time in seconds no process could make progress due to ${resource} congestion.` },
    },
  ]);
}

export const pressureCollector: Collector = {
  name: 'pressure',
  description: 'pressure stall information (PSI): time stalled on CPU, I/O and memory',
  create(options: CollectorOptions): Source {
    const top = new Source('pressure');
    for (const resource of RESOURCES) {
      const path = kernelPath(options.procRoot, 'pressure', resource);
      if (!existsSync(path)) continue;
      const file = new KernelFile(path, parsePressure, options);
      const src = new Source(resource);
      src.addValues(schemaOf(resource), {
        base: new LiveValues((line) => {
          const total = file.get().get(line);
          if (total === undefined) throw new StatsError('ENOENT', `${path} has no "${line}" line`);
          return total;
        }),
      });
      top.addSubordinate(src);
    }
    return top;
  },
};
