/**
 * The changes producers make to the tree, request by request (DEFINE, SOURCE, ATTACH, DETACH, VALUES,
 * UPDATE, REMOVE, REMOVE_PATH) and when an owner's last connection goes, under the ownership rules: only
 * the owner may change or remove a node, and nodes are created only under the root or the owner's own
 * sources. Each request is checked whole before anything changes, so a refused one changes nothing.
 */
import { Histogram, NAME_MAX, Schema, Source, StatsError, validateName, type HistogramState, type ValueGroup, type ValueSpec } from '../model/index.js';
import {
  DESCRIPTION_MAX,
  HISTOGRAM_PROTOCOL_VERSION,
  Op,
  ProtocolError,
  RemoveKind,
  UNIT_MAX,
  UPDATE_ENTRY_BYTES,
  UpdateOp,
  decodeRequest,
  encodeValuesOk,
  type DefineRequest,
  type Frame,
  type SourceRequest,
  type ValuesRequest,
  type WireValueSpec,
} from '../protocol/protocol.js';
import { bindHandle, HISTOGRAM_VALUE_COST, Owner, unbindTarget, valueCost, type Connection } from './producer-owners.js';

/** The caps and the neighbour a ProducerTree works with (ProducerServerOptions, defaults applied). */
export interface ProducerTreeOptions {
  maxSources: number;
  maxHandles: number;
  maxValues: number;
  /** See ProducerServerOptions.removeKept. */
  removeKept?: (path: string) => boolean;
}

export class ProducerTree {
  private readonly owners = new Map<string, Owner>();
  private readonly nodeOwner = new WeakMap<Source, Owner>();
  /** Identical definitions share one Schema, so producers' values aggregate together and adoption works. */
  private readonly schemas = new Map<string, WeakRef<Schema>>();
  private readonly schemaGc = new FinalizationRegistry<string>((key) => {
    if (this.schemas.get(key)?.deref() === undefined) this.schemas.delete(key);
  });
  /** The definitions each schema was made from, as they came (a state checkpoint saves these). */
  private readonly specsOf = new WeakMap<Schema, WireValueSpec[]>();
  /** Changes made through keeping connections: a state keeper checkpoints when this moves. */
  keptChanges = 0;
  /** Whether what keeping connections change is journaled (journalChunk() after each chunk of frames). */
  journaling = false;
  /** Groups of keeping connections updated since the last journalChunk(). */
  private readonly touched = new Set<ValueGroup>();
  /** What keeping owners changed in the kept nodes since the last journalChunk(), in order (see KeptChange). */
  private changes: KeptChange[] = [];
  /** The definition lists the changes refer to, by index (each once per record). */
  private changeSchemas: WireValueSpec[][] = [];
  private readonly changeSchemaIndex = new Map<Schema, number>();
  private readonly maxSources: number;
  private readonly maxHandles: number;
  private readonly maxValues: number;

  constructor(
    readonly root: Source,
    private readonly options: ProducerTreeOptions,
    private readonly counts: { updates: number },
  ) {
    this.maxSources = options.maxSources;
    this.maxHandles = options.maxHandles;
    this.maxValues = options.maxValues;
  }

  /** The owner named `name` (a valid name), or a new anonymous one for ''. */
  owner(name: string): Owner {
    if (name === '') return new Owner(null);
    let owner = this.owners.get(name);
    if (owner === undefined) this.owners.set(name, (owner = new Owner(name)));
    return owner;
  }

  /** Applies a request; returns the OK reply when it has a payload (else null: an empty OK). */
  apply(conn: Connection, frame: Frame): Buffer | null {
    const req = decodeRequest(frame);
    if (conn.keep) this.keptChanges++;
    switch (req.op) {
      case Op.HELLO:
        throw new ProtocolError('EPROTO', 'HELLO was already received on this connection');
      case Op.UPDATE:
        this.update(conn, req.buf, req.offset, req.count);
        return null;
      case Op.DEFINE:
        this.define(conn, req);
        return null;
      case Op.SOURCE:
        this.createSource(conn, req);
        return null;
      case Op.ATTACH: {
        const parent = this.parentSource(conn, req.parent);
        const child = this.ownSource(conn, req.child);
        if (child.parent !== null) throw new StatsError('EEXIST', `source "${child.path}" is attached: detach it first`);
        if (child.hidden) this.checkHiddenName(parent, child.name);
        parent.addSubordinate(child);
        if (this.journaled(conn.owner!, child)) this.noteSubtree(conn.owner!, child);
        return null;
      }
      case Op.DETACH: {
        const src = this.ownSource(conn, req.handle);
        const parent = src.parent;
        if (parent === null) throw new StatsError('ENOENT', `source "${src.name}" is not attached`);
        if (this.journaled(conn.owner!, src)) this.changes.push(['rs', conn.owner!.name!, this.pathOf(src)]);
        parent.removeSubordinate(src);
        return null;
      }
      case Op.VALUES: {
        const adopted = this.addValues(conn, req);
        if (conn.version < 2) return null;
        // version 2: say whether the group was adopted and, for values, what they hold now
        const values = adopted !== null && !adopted.isAggregate ? adopted.schema.defs.map((d) => adopted.get(d.index)) : [];
        return encodeValuesOk(frame.id, { adopted: adopted !== null, values }, conn.version);
      }
      case Op.REMOVE:
        this.remove(conn, req.kind, req.handle);
        return null;
      case Op.REMOVE_PATH:
        this.removePath(conn, req.path);
        return null;
      case Op.PING:
        return null;
    }
  }

  // --- handles ---------------------------------------------------------------------------------------------

  private bindable<T>(conn: Connection, map: Map<number, T>, handle: number, what: string, live: (t: T) => boolean): void {
    if (handle === 0) throw new ProtocolError('EINVAL', `${what} handle 0 is reserved`);
    const old = map.get(handle);
    if (old !== undefined && live(old)) throw new StatsError('EEXIST', `${what} handle ${handle} is in use`);
    if (old === undefined && conn.handleCount >= this.maxHandles) {
      throw new ProtocolError('EDQUOT', `this connection has ${this.maxHandles} handles: remove some first`);
    }
  }

  /** A source handle that is live: 0 is the root. */
  private source(conn: Connection, handle: number): Source {
    if (handle === 0) return this.root;
    const src = conn.sources.get(handle);
    if (src === undefined) throw new StatsError('ENOENT', `no source handle ${handle}`);
    if (!conn.owner!.sources.has(src)) throw new StatsError('ENOENT', `source handle ${handle} ("${src.name}") was removed`);
    return src;
  }

  private ownSource(conn: Connection, handle: number): Source {
    if (handle === 0) throw new StatsError('EPERM', 'the root belongs to the daemon');
    return this.source(conn, handle);
  }

  /** Where this connection may create or attach: the root or its own sources. */
  private parentSource(conn: Connection, handle: number): Source {
    return this.source(conn, handle);
  }

  private owns(conn: Connection, src: Source): boolean {
    return this.nodeOwner.get(src) === conn.owner;
  }

  // --- DEFINE ----------------------------------------------------------------------------------------------

  private define(conn: Connection, req: DefineRequest): void {
    this.bindable(conn, conn.schemas, req.schema, 'schema', () => true);
    const seen = new Set<string>();
    for (const v of req.values) {
      validateName(v.name, 'value');
      if (seen.has(v.name)) throw new StatsError('EINVAL', `value "${v.name}" is defined twice`);
      seen.add(v.name);
      noControl(v.unit ?? '', `value "${v.name}": unit`, UNIT_MAX);
      noControl(v.description ?? '', `value "${v.name}": description`, DESCRIPTION_MAX);
      for (const e of v.enum ?? []) {
        if (e.length === 0) throw new ProtocolError('EINVAL', `value "${v.name}": empty enum name`);
        noControl(e, `value "${v.name}": enum name`, NAME_MAX);
      }
    }
    for (const v of req.values) {
      if (v.type !== 'histogram') continue;
      if (conn.version < HISTOGRAM_PROTOCOL_VERSION) throw new ProtocolError('EINVAL', `value "${v.name}": histograms need protocol version ${HISTOGRAM_PROTOCOL_VERSION}`);
      if (v.enum && v.enum.length > 0) throw new ProtocolError('EINVAL', `histogram "${v.name}" cannot have enum names`);
    }
    conn.schemas.set(req.schema, this.schemaFor(req.values));
  }

  /** The schema of these (checked) definitions: one per distinct list, shared. */
  private schemaFor(values: WireValueSpec[]): Schema {
    const key = JSON.stringify(values.map((v) => [v.name, v.type, v.aggr ?? 'none', v.floating ?? false, v.mode ?? null, v.unit ?? '', v.description ?? '', v.enum ?? []]));
    let schema = this.schemas.get(key)?.deref();
    if (schema === undefined) {
      schema = new Schema(values.map(toValueSpec));
      this.schemas.set(key, new WeakRef(schema));
      this.schemaGc.register(schema, key);
      this.specsOf.set(schema, values);
    }
    return schema;
  }

  // --- SOURCE ----------------------------------------------------------------------------------------------

  /** A subordinate by name: the visible one, else a hidden one of this owner. */
  private child(conn: Connection, parent: Source, name: string): Source | undefined {
    return parent.subordinate(name) ?? parent.hiddenSubordinates(name).find((s) => this.owns(conn, s));
  }

  private checkHiddenName(parent: Source, name: string): void {
    if (parent.hiddenSubordinates(name).length > 0) throw new StatsError('EEXIST', `a hidden source "${name}" exists there`);
  }

  private createSource(conn: Connection, req: SourceRequest): void {
    const owner = conn.owner!;
    this.bindable(conn, conn.sources, req.handle, 'source', (s) => owner.sources.has(s));
    const parts = req.path.split('/');
    for (const p of parts) validateName(p, 'source');
    if (req.detached) {
      if (req.parent !== 0 || parts.length !== 1) throw new ProtocolError('EINVAL', 'a detached source is created from one name with parent 0');
      this.checkSourceCap(owner, 1);
      const src = new Source(parts[0], { hidden: req.hidden });
      this.own(owner, src);
      bindHandle(conn.sources, conn.sourceHandles, req.handle, src);
      return;
    }
    const parent = this.parentSource(conn, req.parent);
    // First pass: permissions, conflicts and caps, so that a refused request changes nothing.
    let cur: Source | undefined = parent;
    let missing = 0;
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      if (cur !== undefined && cur !== this.root && !this.owns(conn, cur)) {
        throw new StatsError('EPERM', `"${cur.path}" belongs to ${this.ownerLabel(cur)}: create your own sources beside it`);
      }
      const next: Source | undefined = cur === undefined ? undefined : this.child(conn, cur, parts[i]);
      if (next === undefined) {
        missing++;
        if (last && req.hidden && cur !== undefined) this.checkHiddenName(cur, parts[i]);
      } else if (last) {
        if (!this.owns(conn, next)) throw new StatsError('EPERM', `"${next.path}" exists and belongs to ${this.ownerLabel(next)}`);
        if (next.hidden !== req.hidden) throw new StatsError('EEXIST', `"${next.path}" exists ${next.hidden ? 'hidden' : 'visible'}`);
      }
      cur = next;
    }
    this.checkSourceCap(owner, missing);
    // Second pass: create what is missing; an existing source of this owner is adopted.
    cur = parent;
    const journaled = this.journaled(owner, parent);
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      let next = this.child(conn, cur, parts[i]);
      if (next === undefined) {
        next = new Source(parts[i], { hidden: last && req.hidden });
        cur.addSubordinate(next);
        this.own(owner, next);
        if (journaled) this.changes.push(['s', owner.name!, this.pathOf(next), next.hidden]);
      }
      cur = next;
    }
    bindHandle(conn.sources, conn.sourceHandles, req.handle, cur);
  }

  private checkSourceCap(owner: Owner, more: number): void {
    if (owner.sources.size + more > this.maxSources) {
      throw new ProtocolError('EDQUOT', `${owner.label} would have more than ${this.maxSources} sources`);
    }
  }

  private own(owner: Owner, src: Source): void {
    owner.sources.add(src);
    this.nodeOwner.set(src, owner);
  }

  private ownerLabel(src: Source): string {
    const owner = this.nodeOwner.get(src);
    return owner === undefined ? 'the daemon' : `producer ${owner.name === null ? '(anonymous)' : JSON.stringify(owner.name)}`;
  }

  // --- VALUES ----------------------------------------------------------------------------------------------

  /** Adds (or adopts) a value group; returns the adopted group, or null when a new one was made. */
  private addValues(conn: Connection, req: ValuesRequest): ValueGroup | null {
    const owner = conn.owner!;
    this.bindable(conn, conn.groups, req.group, 'group', (g) => owner.groups.has(g));
    const src = this.ownSource(conn, req.source);
    if (!this.owns(conn, src)) throw new StatsError('EPERM', `"${src.path}" belongs to ${this.ownerLabel(src)}`);
    const schema = conn.schemas.get(req.schema);
    if (schema === undefined) throw new StatsError('ENOENT', `no schema handle ${req.schema}`);
    for (const g of src.valueGroups) {
      if (g.schema === schema) {
        if (g.isAggregate !== req.aggregate) continue;
        if (!owner.groups.has(g) || g.hidden !== req.hidden) throw new StatsError('EEXIST', `"${src.path}" already has these ${req.aggregate ? 'aggregates' : 'values'}`);
        bindHandle(conn.groups, conn.groupHandles, req.group, g); // adopted: the same definition added again by its owner
        return g;
      }
      for (const def of schema.defs) {
        if (g.schema.find(def.name)) throw new StatsError('EEXIST', `"${src.path}/${def.name}" exists with another definition`);
      }
    }
    if (!req.aggregate && owner.valueSlots + valueCost(schema) > this.maxValues) {
      throw new ProtocolError('EDQUOT', `${owner.label} would have more than ${this.maxValues} values (a histogram counts as ${HISTOGRAM_VALUE_COST})`);
    }
    const group = req.aggregate ? src.addAggregates(schema, { hidden: req.hidden }) : src.addValues(schema, { hidden: req.hidden });
    owner.groups.add(group);
    if (!req.aggregate) owner.valueSlots += valueCost(schema);
    bindHandle(conn.groups, conn.groupHandles, req.group, group);
    if (this.journaled(owner, src)) this.noteGroup(owner, group, false); // a new group holds zeros
    return null;
  }

  // --- UPDATE: the hot path ----------------------------------------------------------------------------------

  private update(conn: Connection, buf: Buffer, offset: number, count: number): void {
    const owned = conn.owner!.groups;
    const groups = conn.groups;
    const end = offset + count * UPDATE_ENTRY_BYTES;
    const maxOp = conn.version >= HISTOGRAM_PROTOCOL_VERSION ? UpdateOp.WEIGHT : UpdateOp.ADD;
    // observed doubles through a view: Buffer.readDoubleLE checks its arguments on every call
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    // Validate everything first: after this loop nothing below can throw, so the batch is all or nothing.
    let lastHandle = -1;
    let last: ValueGroup | undefined;
    for (let at = offset, i = 0; at < end; at += UPDATE_ENTRY_BYTES, i++) {
      const handle = buf.readUInt32LE(at);
      if (handle !== lastHandle) {
        last = groups.get(handle);
        if (last === undefined) throw new StatsError('ENOENT', `update ${i}: no group handle ${handle}`);
        if (!owned.has(last)) throw new StatsError('ENOENT', `update ${i}: group handle ${handle} was removed`);
        if (last.isAggregate) throw new StatsError('EPERM', `update ${i}: group handle ${handle} holds aggregates`);
        lastHandle = handle;
      }
      const index = buf.readUInt16LE(at + 4);
      if (index >= last!.schema.size) throw new StatsError('ENOENT', `update ${i}: group handle ${handle} has no value ${index}`);
      const op = buf[at + 6];
      if (op > maxOp || buf[at + 7] !== 0) throw new ProtocolError('EINVAL', `update ${i}: unknown operation ${op}/${buf[at + 7]}`);
      const def = last!.schema.defs[index];
      if (op <= UpdateOp.ADD) {
        if (def.histogram) throw new ProtocolError('EINVAL', `update ${i}: "${def.name}" is a histogram: OBSERVE it`);
        continue;
      }
      if (!def.histogram) throw new ProtocolError('EINVAL', `update ${i}: "${def.name}" is not a histogram: SET or ADD it`);
      if (op === UpdateOp.WEIGHT) {
        const next = at + UPDATE_ENTRY_BYTES;
        if (next >= end || buf[next + 6] !== UpdateOp.OBSERVE || buf.readUInt32LE(next) !== handle || buf.readUInt16LE(next + 4) !== index) {
          throw new ProtocolError('EINVAL', `update ${i}: a WEIGHT must be followed by an OBSERVE of the same value`);
        }
        continue;
      }
      const value = view.getFloat64(at + 8, true);
      if (!(value >= 0) || value === Infinity) throw new ProtocolError('EINVAL', `update ${i}: a histogram takes finite values >= 0, not ${value}`);
    }
    lastHandle = -1;
    const journaled = this.journaling && this.keeps(conn.owner!);
    // the words go in as they came (lo, hi): no number or bigint per entry
    let weightLo = 1;
    let weightHi = 0;
    for (let at = offset; at < end; at += UPDATE_ENTRY_BYTES) {
      const handle = buf.readUInt32LE(at);
      if (handle !== lastHandle) {
        last = groups.get(handle);
        lastHandle = handle;
        if (journaled) this.touched.add(last!);
      }
      const op = buf[at + 6];
      if (op === UpdateOp.OBSERVE) {
        last!.ownHistogram(last!.schema.defs[buf.readUInt16LE(at + 4)]).observeWeighted(view.getFloat64(at + 8, true), weightLo, weightHi);
        weightLo = 1;
        weightHi = 0;
      } else if (op === UpdateOp.WEIGHT) {
        weightLo = buf.readUInt32LE(at + 8);
        weightHi = buf.readUInt32LE(at + 12);
      } else if (op === UpdateOp.SET) last!.setWord(buf.readUInt16LE(at + 4), buf.readUInt32LE(at + 8), buf.readUInt32LE(at + 12));
      else last!.addWord(buf.readUInt16LE(at + 4), buf.readUInt32LE(at + 8), buf.readUInt32LE(at + 12));
    }
    this.counts.updates += count;
  }

  // --- REMOVE ----------------------------------------------------------------------------------------------

  private remove(conn: Connection, kind: number, handle: number): void {
    const owner = conn.owner!;
    if (kind === RemoveKind.SOURCE) {
      const src = this.ownSource(conn, handle);
      this.removeJournaledTree(owner, src); // frees its handles, and those of everything below it
    } else if (kind === RemoveKind.GROUP) {
      const g = conn.groups.get(handle);
      if (g === undefined || !owner.groups.has(g)) throw new StatsError('ENOENT', `no group handle ${handle}`);
      this.removeJournaledGroup(owner, g);
    } else {
      if (!conn.schemas.delete(handle)) throw new StatsError('ENOENT', `no schema handle ${handle}`);
    }
  }

  private removePath(conn: Connection, path: string): void {
    const owner = conn.owner!;
    const parts = path.split('/');
    for (const p of parts) validateName(p, 'path component');
    if (this.options.removeKept?.(path) === true) return;
    let cur = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = this.child(conn, cur, parts[i]);
      if (next === undefined) throw new StatsError('ENOENT', `no source "${parts.slice(0, i + 1).join('/')}"`);
      cur = next;
    }
    const name = parts[parts.length - 1];
    const src = this.child(conn, cur, name);
    if (src !== undefined) {
      if (!this.owns(conn, src)) throw new StatsError('EPERM', `"${path}" belongs to ${this.ownerLabel(src)}`);
      this.removeJournaledTree(owner, src);
      return;
    }
    const found = cur.findValue(name);
    if (found === undefined) throw new StatsError('ENOENT', `no source or value "${path}"`);
    if (!owner.groups.has(found.group)) throw new StatsError('EPERM', `"${path}" belongs to ${this.ownerLabel(cur)}`);
    this.removeJournaledGroup(owner, found.group);
  }

  private removeGroup(owner: Owner, g: ValueGroup): void {
    g.source.removeValues(g);
    owner.groups.delete(g);
    for (const c of owner.conns) unbindTarget(c.groups, c.groupHandles, g);
    if (!g.isAggregate) owner.valueSlots -= valueCost(g.schema);
  }

  /** A removal by a request, journaled: one record for the source and all of the owner's below it. */
  private removeJournaledTree(owner: Owner, src: Source): void {
    if (this.journaled(owner, src)) this.changes.push(['rs', owner.name!, this.pathOf(src)]);
    this.removeTree(owner, src);
  }

  private removeJournaledGroup(owner: Owner, g: ValueGroup): void {
    if (this.journaled(owner, g.source)) this.changes.push(['rg', owner.name!, this.pathOf(g.source), g.schema.defs[0].name, g.isAggregate]);
    this.removeGroup(owner, g);
  }

  /** Detaches `src` (the mount sees it go at once), then releases it and everything of the owner below it. */
  private removeTree(owner: Owner, src: Source): void {
    src.parent?.removeSubordinate(src);
    this.release(owner, src);
  }

  private release(owner: Owner, src: Source): void {
    for (const sub of [...src.subordinates]) if (owner.sources.has(sub)) this.release(owner, sub);
    for (const g of [...src.valueGroups]) if (owner.groups.has(g)) this.removeGroup(owner, g);
    owner.sources.delete(src);
    for (const c of owner.conns) unbindTarget(c.sources, c.sourceHandles, src);
  }

  // --- state: what a restart finds again (the daemon's state directory) -----------------------------------------

  /**
   * What the owners that keep their nodes (a KEEP connection, or none left after one) hold: their attached
   * sources, parents first, with their value groups and values. Anonymous owners and detached sources could
   * never be found again, so they are not kept.
   */
  saveKept(): KeptState {
    const out: KeptOwner[] = [];
    // each definition list once, the groups refer to it by index
    const schemas: WireValueSpec[][] = [];
    const schemaIndex = new Map<Schema, number>();
    const indexOf = (schema: Schema): number => {
      let i = schemaIndex.get(schema);
      if (i === undefined) schemaIndex.set(schema, (i = schemas.push(this.specsOf.get(schema)!) - 1));
      return i;
    };
    for (const owner of this.owners.values()) {
      if (owner.conns.size > 0 && ![...owner.conns].some((c) => c.keep)) continue;
      const depth = new Map<Source, number>();
      const depthOf = (s: Source): number => {
        let d = depth.get(s);
        if (d !== undefined) return d;
        const p = s.parent;
        const above = p === this.root ? 0 : p !== null && owner.sources.has(p) ? depthOf(p) : -1;
        d = above < 0 ? -1 : above + 1;
        depth.set(s, d);
        return d;
      };
      const sources = [...owner.sources].filter((s) => depthOf(s) > 0).sort((a, b) => depthOf(a) - depthOf(b));
      const index = new Map(sources.map((s, i) => [s, i]));
      const kept: KeptSource[] = sources.map((s) => ({
        name: s.name,
        parent: s.parent === this.root ? -1 : index.get(s.parent!)!,
        hidden: s.hidden,
        groups: s.valueGroups.filter((g) => owner.groups.has(g)).map((g) => ({
          schema: indexOf(g.schema),
          aggregate: g.isAggregate,
          hidden: g.hidden,
          values: g.isAggregate ? [] : groupValues(g),
        })),
      }));
      if (kept.length > 0) out.push({ owner: owner.name!, sources: kept });
    }
    return { schemas, owners: out };
  }

  /**
   * Creates saved owners' sources and groups again, as kept nodes waiting for their owner to reconnect and
   * adopt them (with the values they held). Returns how many sources could not be (a name taken by another
   * since), which are left out with what was below them.
   */
  restoreKept(saved: KeptState): number {
    let skipped = 0;
    for (const k of saved.owners) {
      const owner = this.owner(k.owner);
      const made: (Source | undefined)[] = [];
      for (const ks of k.sources) {
        const src = this.restoreSource(owner, ks.parent < 0 ? this.root : made[ks.parent], ks.name, ks.hidden);
        made.push(src);
        if (src === undefined) skipped++;
        else for (const kg of ks.groups) this.restoreGroup(owner, src, saved.schemas[kg.schema], kg.aggregate, kg.hidden, kg.values);
      }
    }
    return skipped;
  }

  /** A kept source made again under `parent`, or undefined when there is no parent or the name is taken. */
  private restoreSource(owner: Owner, parent: Source | undefined, name: string, hidden: boolean): Source | undefined {
    if (parent === undefined || parent.subordinate(name) !== undefined || parent.hiddenSubordinates(name).length > 0) return undefined;
    validateName(name, 'source');
    const src = new Source(name, { hidden });
    parent.addSubordinate(src);
    this.own(owner, src);
    return src;
  }

  private restoreGroup(owner: Owner, src: Source, specs: WireValueSpec[], aggregate: boolean, hidden: boolean, values: readonly (string | HistogramState)[]): void {
    const schema = this.schemaFor(specs);
    const g = aggregate ? src.addAggregates(schema, { hidden }) : src.addValues(schema, { hidden });
    owner.groups.add(g);
    if (aggregate) return;
    owner.valueSlots += valueCost(schema);
    setGroupValues(g, values);
  }

  // --- the journal: what each chunk of frames changed in the kept nodes, in proportion to the change ------------

  /** Whether the owner's nodes are kept (saveKept() holds them): named, and a keeping connection or none left. */
  private keeps(owner: Owner): boolean {
    if (owner.name === null) return false;
    if (owner.conns.size === 0) return true;
    for (const c of owner.conns) if (c.keep) return true;
    return false;
  }

  /** Whether a change at `src` (a source of `owner`, or the root) is journaled: kept, and attached to the root. */
  private journaled(owner: Owner, src: Source): boolean {
    if (!this.journaling || !this.keeps(owner)) return false;
    for (let s: Source | null = src; s !== this.root; s = s.parent) if (s === null) return false;
    return true;
  }

  /** A source's names from the root: a journal record's reference to it (handles are the connection's). */
  private pathOf(src: Source): string[] {
    const path: string[] = [];
    for (let s: Source | null = src; s !== null && s !== this.root; s = s.parent) path.push(s.name);
    return path.reverse();
  }

  /** Journals a group as added, with its values (a new group: none, it holds zeros). */
  private noteGroup(owner: Owner, g: ValueGroup, withValues: boolean): void {
    let schema = this.changeSchemaIndex.get(g.schema);
    if (schema === undefined) this.changeSchemaIndex.set(g.schema, (schema = this.changeSchemas.push(this.specsOf.get(g.schema)!) - 1));
    this.changes.push(['g', owner.name!, this.pathOf(g.source), schema, g.isAggregate, g.hidden, withValues && !g.isAggregate ? groupValues(g) : []]);
  }

  /** Journals a source that became kept (attached, or its owner keeps now) with the owner's groups and sources below it. */
  private noteSubtree(owner: Owner, src: Source): void {
    this.changes.push(['s', owner.name!, this.pathOf(src), src.hidden]);
    for (const g of src.valueGroups) if (owner.groups.has(g)) this.noteGroup(owner, g, true);
    for (const sub of src.subordinates) if (owner.sources.has(sub)) this.noteSubtree(owner, sub);
  }

  /** Journals a change of whether the owner is kept: all its attached nodes, or none of them. */
  private noteKeeping(owner: Owner, kept: boolean): void {
    if (!this.keeps(owner) === !kept || owner.sources.size === 0) return; // an owner of nothing: nothing changes
    this.keptChanges++;
    if (!this.journaling) return;
    this.changes.push(['drop', owner.name!]);
    if (!kept) for (const src of owner.sources) if (src.parent === this.root) this.noteSubtree(owner, src);
  }

  /** A connection of `owner` said HELLO (conn.keep set): the owner's nodes may become kept, or stop being. */
  arrive(conn: Connection, owner: Owner): void {
    const kept = this.keeps(owner);
    owner.conns.add(conn);
    this.noteKeeping(owner, kept);
  }

  /**
   * The journal record of what keeping owners changed since the last call, or null: the changes of nodes,
   * in order (sources and groups added, removed; owners that stopped keeping), then the values of each
   * group updated, keyed by owner, source path and first value name.
   */
  journalChunk(): KeptRecord | null {
    const record: KeptRecord = {};
    if (this.changes.length > 0) {
      record.changes = this.changes;
      if (this.changeSchemas.length > 0) record.schemas = this.changeSchemas;
      this.changes = [];
      this.changeSchemas = [];
      this.changeSchemaIndex.clear();
    }
    if (this.touched.size > 0) {
      const values: JournaledGroup[] = [];
      for (const g of this.touched) {
        const owner = this.nodeOwner.get(g.source);
        // a group removed since, or on a source no longer attached, is not kept
        if (owner === undefined || !owner.groups.has(g) || !this.journaled(owner, g.source)) continue;
        values.push([owner.name!, this.pathOf(g.source), g.schema.defs[0].name, groupValues(g)]);
      }
      this.touched.clear();
      if (values.length > 0) record.values = values;
    }
    if (record.changes === undefined && record.values === undefined) return null;
    this.keptChanges++; // a checkpoint comes to hold it (a non-keeping connection of a kept owner moves nothing else)
    return record;
  }

  /**
   * Applies a journal record (after restoreKept() of the checkpoint) as the live daemon did; returns how
   * many of its changes no longer fit (a name taken meanwhile, a parent skipped before), which are skipped.
   */
  replayKept(data: KeptRecord | { kept: KeptState }): number {
    if ('kept' in data) {
      // everything kept, as it was then (a clear through the mount; and journals of earlier versions)
      for (const owner of this.owners.values()) this.dropKept(owner);
      this.owners.clear();
      return this.restoreKept(data.kept);
    }
    let skipped = 0;
    for (const change of data.changes ?? []) if (!this.replayChange(change, data.schemas ?? [])) skipped++;
    for (const [name, path, first, vals] of data.values ?? []) {
      const owner = this.owners.get(name);
      const g = this.find(owner, path)?.valueGroups.find((v) => !v.isAggregate && owner!.groups.has(v) && v.schema.defs[0].name === first);
      if (g !== undefined) setGroupValues(g, vals);
    }
    return skipped;
  }

  private replayChange(change: KeptChange, schemas: WireValueSpec[][]): boolean {
    const owner = change[0] === 'drop' || change[0] === 's' ? this.owner(change[1]) : this.owners.get(change[1]);
    switch (change[0]) {
      case 'drop':
        this.dropKept(owner!);
        if (owner!.sources.size === 0) this.owners.delete(change[1]);
        return true;
      case 's': {
        const path = change[2];
        const src = this.restoreSource(owner!, this.find(owner, path.slice(0, -1)), path[path.length - 1], change[3]);
        return src !== undefined;
      }
      case 'g': {
        const src = this.find(owner, change[2]);
        if (src === undefined) return false;
        try {
          this.restoreGroup(owner!, src, schemas[change[3]], change[4], change[5], change[6]);
        } catch {
          return false; // a name the source holds already (a group replayed over a checkpoint that has it)
        }
        return true;
      }
      case 'rs': {
        const src = this.find(owner, change[2]);
        if (src === undefined || src === this.root) return false;
        this.removeTree(owner!, src);
        return true;
      }
      case 'rg': {
        const [, , path, first, aggregate] = change;
        const g = this.find(owner, path)?.valueGroups.find((v) => v.isAggregate === aggregate && owner!.groups.has(v) && v.schema.defs[0].name === first);
        if (g === undefined) return false;
        this.removeGroup(owner!, g);
        return true;
      }
    }
  }

  /** The owner's source at `path` (names from the root; [] is the root), or undefined. */
  private find(owner: Owner | undefined, path: readonly string[]): Source | undefined {
    if (owner === undefined) return undefined;
    let src: Source = this.root;
    for (const p of path) {
      const visible = src.subordinate(p);
      const next = visible !== undefined && this.nodeOwner.get(visible) === owner ? visible : src.hiddenSubordinates(p).find((h) => this.nodeOwner.get(h) === owner);
      if (next === undefined) return undefined;
      src = next;
    }
    return src;
  }

  /** Removes every node of the owner (a replayed owner that stopped keeping). */
  private dropKept(owner: Owner): void {
    for (const src of [...owner.sources]) if (owner.sources.has(src) && (src.parent === null || !owner.sources.has(src.parent))) this.removeTree(owner, src);
  }

  /**
   * `conn` has gone: when it was its owner's last connection, the owner's sources go unless that connection
   * kept them. Detached sources could never be found again, so they go in any case.
   */
  depart(conn: Connection, owner: Owner): void {
    const kept = this.keeps(owner);
    owner.conns.delete(conn);
    if (owner.conns.size > 0) {
      this.noteKeeping(owner, kept); // a keeping connection went and none is left
      return;
    }
    this.keptChanges++; // kept nodes may go now (the last connection did not keep), or become kept
    const tops = [...owner.sources].filter((s) => s.parent === null || !owner.sources.has(s.parent));
    for (const src of tops) if (!conn.keep || src.parent === null) this.removeTree(owner, src);
    if (owner.sources.size === 0 && owner.name !== null) this.owners.delete(owner.name);
  }
}

/** A group's values as a state file holds them: decimal words, histograms bucket for bucket. */
function groupValues(g: ValueGroup): (string | HistogramState)[] {
  return g.schema.defs.map((d) => (d.histogram ? g.ownHistogram(d).toState() : g.get(d.index).toString()));
}

function setGroupValues(g: ValueGroup, values: readonly (string | HistogramState)[]): void {
  values.forEach((v, i) => {
    const def = g.schema.defs[i];
    if (def.histogram) {
      const h = g.ownHistogram(def);
      h.clear();
      h.merge(Histogram.fromState(v as HistogramState));
    } else {
      const w = BigInt.asUintN(64, BigInt(v as string));
      g.setWord(i, Number(w & 0xffffffffn), Number(w >> 32n));
    }
  });
}

/** A journal record of the producer part: the changes of kept nodes, in order, then values (see journalChunk). */
export interface KeptRecord {
  changes?: KeptChange[];
  /** The definition lists the changes' groups refer to (by index). */
  schemas?: WireValueSpec[][];
  values?: JournaledGroup[];
}

/**
 * A change of kept nodes, by owner and source path (names from the root): a source added ('s', hidden), a
 * group added ('g': schema index, aggregate, hidden, values; [] for zeros), a source removed with all of the
 * owner's below it ('rs'), a group removed ('rg', by its first value name), an owner whose nodes are no
 * longer kept ('drop': all of them go; those it keeps again follow as 's' and 'g').
 */
export type KeptChange =
  | [op: 's', owner: string, path: string[], hidden: boolean]
  | [op: 'g', owner: string, path: string[], schema: number, aggregate: boolean, hidden: boolean, values: (string | HistogramState)[]]
  | [op: 'rs', owner: string, path: string[]]
  | [op: 'rg', owner: string, path: string[], first: string, aggregate: boolean]
  | [op: 'drop', owner: string];

/** A journaled group: owner, source path (names from the root), first value name, values. */
export type JournaledGroup = [owner: string, path: string[], first: string, values: (string | HistogramState)[]];

/** What keeping owners hold, as a state file holds it (ProducerTree.saveKept): definitions once, then owners. */
export interface KeptState {
  schemas: WireValueSpec[][];
  owners: KeptOwner[];
}

/** A kept owner and its sources, parents first. */
export interface KeptOwner {
  owner: string;
  sources: KeptSource[];
}

/** A source: its name, the index of its parent among the owner's (-1: the root), and its groups. */
export interface KeptSource {
  name: string;
  parent: number;
  hidden: boolean;
  /** schema: an index into KeptState.schemas. */
  groups: { schema: number; aggregate: boolean; hidden: boolean; values: (string | HistogramState)[] }[];
}

function noControl(s: string, what: string, max: number): void {
  if (s.length > max) throw new ProtocolError('EINVAL', `${what} is longer than ${max} characters`);
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new ProtocolError('EINVAL', `${what} ${JSON.stringify(s.slice(0, 40))} contains a control character`);
}

function enumShow(names: readonly string[]): (v: bigint) => string {
  return (v) => (v >= 0n && v < BigInt(names.length) ? names[Number(v)] : v.toString());
}

function toValueSpec(v: WireValueSpec): ValueSpec {
  const spec: ValueSpec = { name: v.name, type: v.type, aggr: v.aggr ?? 'none', floating: v.floating ?? false };
  if (v.mode !== undefined) spec.mode = v.mode;
  if (v.unit) spec.unit = v.unit;
  if (v.description) spec.description = v.description;
  if (v.enum && v.enum.length > 0) spec.show = enumShow(v.enum);
  return spec;
}
