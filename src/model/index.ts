export { StatsError, NAME_MAX, RESERVED_NAMES, validateName, isValidName, nameProblem, type StatsErrorCode } from './errors.js';
export {
  Histogram,
  HISTOGRAM_FILES,
  HISTOGRAM_MAX_BUCKETS,
  HISTOGRAM_QUANTILES,
  HISTOGRAM_SCALE,
  bucketUpperBound,
  formatHistogramNumber,
  histogramFileName,
  histogramFileOf,
  histogramFileText,
  relativeError,
  type HistogramFile,
  type HistogramState,
} from './histogram.js';
export { HISTOGRAM_TYPE, TYPES, type CustomType, type StandardTypeName, type ValueType } from './types.js';
export { Schema, ValueDef, AGGREGATIONS, type Aggregation, type ValueSpec } from './schema.js';
export { Source, type SourceOptions, type TreeObserver } from './source.js';
export { ValueGroup, type AddValuesOptions, type Storage } from './value-group.js';
export { arena, SEQ, SlotArena } from './arena.js';
export { LiveValues, counterType, gaugeType } from './live.js';
export { Snapshot, type SnapshotContent, type SnapshotRenderer, type SnapshotStream } from './snapshot.js';
export { captureSnapshot, captureSnapshotSliced, CAPTURE_SLICE_MS, type CaptureFilter } from './capture.js';
export { WriteBarrier } from './barrier.js';
export { Writes } from './writes.js';
export type { Exposure, Scale, SourceExposure } from './exposure.js';
