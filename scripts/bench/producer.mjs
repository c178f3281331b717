#!/usr/bin/env node
// A producer in a process of its own, as an application would run it: publishes bench/requests (a u64
// counter) into the daemon over its socket and adds 1 to it every millisecond, so that the value the cat
// benchmark reads keeps changing, as basefs's counter does.
//
//   node scripts/bench/producer.mjs <socket>
//
// Prints "ready" once the value exists in the tree; SIGTERM closes the connection and exits 0.
import { connect } from '../../dist/src/client/index.js';

const client = await connect({ path: process.argv[2], reconnect: false });
const schema = client.define([{ name: 'requests', type: 'u64', aggr: 'sum' }]);
const requests = client.source('bench').values(schema).counter('requests');
requests.add();
await client.flush();
setInterval(() => requests.add(), 1);
process.stdout.write('ready\n');
process.once('SIGTERM', () => void client.close().then(() => process.exit(0)));
