/**
 * The producer client: publish statistics into a statsfs daemon from another Node process (the package's
 * "./client" entry). The connection is client.ts, the handles handles.ts.
 *
 * ```js
 * import { connect } from 'statsfs/client';
 * const client = await connect({ socket: '/run/statsfs.sock' });
 * const schema = client.define([{ name: 'requests', type: 'u64', aggr: 'sum' }, { name: 'queue', type: 'u32', floating: true }]);
 * const web = client.source('myapp/web');
 * const values = web.values(schema);
 * const requests = values.counter('requests');
 * const queue = values.gauge('queue');
 * requests.add();            // batched: sent within flushIntervalMs, or when the batch is full
 * queue.set(17);
 * await client.flush();      // everything so far is applied (rejects with the first error since the last flush)
 * await client.close();
 * ```
 *
 * Definitions, sources and value groups are sent at once and pipelined with the updates (their handles
 * are chosen here, so nothing waits for a reply); their `ready` promise settles when the daemon answers.
 *
 * The client mirrors every value it publishes **as the daemon acknowledged it**: an UPDATE frame the daemon
 * refuses (it applies a frame all or none) changes no mirror and is reported (flush() rejects, onError). After
 * a lost connection it reconnects (`reconnect`, on by default) and creates everything it owned again. Where the
 * daemon kept the values (an owner with `keep`), the daemon's values are adopted as they are (a clear made
 * through the mount stays); where it dropped them, they are re-created from the mirror. Updates made while
 * disconnected are sent after that; updates in flight when the connection was lost are applied at most once.
 */
export { defaultSocketPath } from '../protocol/protocol.js';
export type { WireAggregation as Aggregation, WireType as ValueTypeName } from '../protocol/protocol.js';
export type { ClientValueSpec, ConnectOptions } from './options.js';
export { StatsClientError } from './errors.js';
export { SchemaHandle, SourceHandle, GroupHandle, AggregatesHandle, ValuesHandle, Counter, Gauge } from './handles.js';
export { StatsClient, connect } from './client.js';
