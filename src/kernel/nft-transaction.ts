import { DATATYPE_IDS, DATATYPE_LENGTHS, FIELDS, encodeAddress, encodePrefix, encodeValue, registerWidth } from './fields.js';
import type { Chain, DataType, Field, NamedSet, NftFamily, Rule, SetElement, Statement, TableFamily, Value, Verdict } from './ruleset.js';
import type { NativeAttributes } from './native.js';
import {
  CONCAT_TYPE_BITS, HOOKS, ICMP_PORT_UNREACH, NFPROTO, NFTA_FIB_F, NFT_CMP, NFT_CT_LABELS, NFT_CT_STATE, NFT_DATA_VERDICT, NFT_DYNSET_OP_UPDATE,
  NFT_FIB_RESULT_ADDRTYPE, NFT_LOOKUP_F_INV, NFT_META_KEY, NFT_MSG, NFT_NAT_DNAT, NFT_NG_RANDOM, NFT_PAYLOAD_BASE, NFT_REG32_00,
  NFT_REG_1, NFT_REG_2, NFT_REG_VERDICT, NFT_REJECT_ICMP_UNREACH, NFT_SET, NFT_SOCKET_KEY, NFT_TABLE_F_DORMANT, NFT_VERDICT, NF_CT_LABELS_LENGTH, NF_CT_STATE_NEW, NF_NAT_RANGE, NF_VERDICT,
  NLM_F, RTN_LOCAL,
} from './uapi.js';
import { OBJECT_KIND, type ObjectKind, WireWriter } from './wire.js';

/**
 * The bytes that recur in every transaction, encoded once for the process: the encodings are pure
 * functions of their inputs (and the statements the planner shares are frozen), so one copy serves
 * every compile.
 */
class EncodedPieces {
  /** Host-order u32s: the values are a few constants (marks, masks, 0). */
  readonly u32s = new Map<number, Buffer>();
  /** Each expression starts with its name's length and its name. */
  readonly expressionHeaders = new Map<string, Buffer>();
  /** Ports, protocols and marks take a few distinct values in a sync. */
  readonly fewValued: Partial<Record<DataType, Map<Value, Buffer>>> = { inet_proto: new Map(), inet_service: new Map(), mark: new Map(), integer: new Map() };
  /** Encoded expressions by statement object, per family (a reject or dnat encodes differently in each). */
  readonly compiled: Record<NftFamily, WeakMap<Statement, { bytes: Buffer; expressions: number }>> = { ip: new WeakMap(), ip6: new WeakMap(), inet: new WeakMap() };
  /** Dnat templates by family and port (DnatTemplate). */
  readonly dnatTemplates: Record<TableFamily, Map<number, DnatTemplate>> = { ip: new Map(), ip6: new Map() };
}

const ENCODED = new EncodedPieces();

/** A host-order u32 as bytes, each value made once. */
const u32 = (value: number) => {
  let buffer = ENCODED.u32s.get(value);
  if (!buffer) {
    buffer = Buffer.alloc(4);
    buffer.writeUInt32LE(value >>> 0);
    ENCODED.u32s.set(value, buffer);
  }
  return buffer;
};

export const setKeyType = (types: DataType[]) =>
  types.reduce((packed, type) => (packed << CONCAT_TYPE_BITS) | DATATYPE_IDS[type], 0);

export const setKeyLength = (types: DataType[]) =>
  types.length === 1 ? DATATYPE_LENGTHS[types[0]] : types.reduce((sum, type) => sum + registerWidth(DATATYPE_LENGTHS[type]), 0);

/** The conntrack labels with one bit set, as the kernel holds them: an array of host-order longs. */
const labelBit = (label: number) => {
  const bits = Buffer.alloc(NF_CT_LABELS_LENGTH);
  bits[label >> 3] = 1 << (label & 7);
  return bits;
};

const verdictCode = (verdict: Verdict) =>
  verdict.kind === 'accept' || verdict.kind === 'drop' ? NF_VERDICT[verdict.kind] : NFT_VERDICT[verdict.kind];

const expressionHeader = (name: string) => {
  let header = ENCODED.expressionHeaders.get(name);
  if (!header) {
    header = Buffer.from(` ${name}`, 'latin1');
    header[0] = name.length;
    ENCODED.expressionHeaders.set(name, header);
  }
  return header;
};

/**
 * A dnat's expressions (immediate address, immediate port, nat) differ only in the address between
 * the endpoints of a port: compiled once per family and port, they are copied around the address.
 */
interface DnatTemplate {
  beforeAddress: Buffer;
  afterAddress: Buffer;
  expressions: number;
}

/** libnftnl user data TLV: NFTNL_UDATA_SET_KEYBYTEORDER (0), 4 bytes, BYTEORDER_HOST_ENDIAN (1). */
const HOST_ORDER_KEY_USERDATA = Buffer.from([0, 4, 1, 0, 0, 0]);

/** dnat and reject encode an address family, which an inet table's rules would have to name. */
function addressFamily(family: NftFamily, statement: Statement): TableFamily {
  if (family === 'inet') throw new Error(`${statement.kind} is only supported in ip and ip6 tables`);
  return family;
}

const chainOf = (verdict: Verdict) => (verdict.kind === 'jump' || verdict.kind === 'goto' ? verdict.chain : undefined);

/**
 * One nftables transaction in the addon's wire format. Every message remembers what it was, so a
 * kernel error against message N can name the object (and the Kubernetes object behind it).
 */
export class NftTransaction {
  private readonly descriptions: string[] = [];
  /** The kernel requires every new set to carry a transaction-unique id (NFTA_SET_ID). */
  private nextSetId = 1;

  /** `writer` may be a finished transaction's, once committed: its buffer is reused. */
  constructor(
    private readonly attrs: NativeAttributes,
    private readonly writer = new WireWriter(),
  ) {
    writer.reset();
    this.writer.u32(0);
  }

  get messageCount(): number {
    return this.descriptions.length;
  }

  describe(index: number): string {
    return this.descriptions[index] ?? `message ${index}`;
  }

  finish(): Buffer {
    this.writer.patchU32(0, this.descriptions.length);
    return this.writer.finish();
  }

  /** Starts a message and its attribute list, which the caller writes and closes. */
  private message(kind: ObjectKind, family: NftFamily, type: number, flags: number, description: string): void {
    const w = this.writer;
    w.u8(OBJECT_KIND[kind]);
    w.u8(NFPROTO[family]);
    w.u16(type);
    w.u16(flags);
    w.u16(0);
    w.openList();
    this.descriptions.push(description);
  }

  private tableMessage(family: NftFamily, type: number, flags: number, description: string, name: string, tableFlags?: number): void {
    this.message('table', family, type, flags, description);
    this.writer.attrString(this.attrs.table.name, name);
    if (tableFlags !== undefined) this.writer.attrU32(this.attrs.table.flags, tableFlags);
    this.writer.closeList();
  }

  addTable(family: NftFamily, name: string): void {
    this.tableMessage(family, NFT_MSG.NEWTABLE, NLM_F.CREATE, `table ${family} ${name}`, name);
  }

  /**
   * Creates a table dormant (its base chains hooked nowhere) or, for an existing one, sets whether
   * it is: a table can be loaded unseen by packets and switched on later.
   */
  addTableDormant(family: NftFamily, name: string, dormant: boolean): void {
    const description = `${dormant ? 'dormant ' : 'activation of '}table ${family} ${name}`;
    this.tableMessage(family, NFT_MSG.NEWTABLE, NLM_F.CREATE, description, name, dormant ? NFT_TABLE_F_DORMANT : 0);
  }

  /**
   * A no-op (create-if-missing) table message asking for an echo: the kernel then reports the
   * generation this transaction commits, which tells our own commits from anyone else's.
   * It must be the first message of the batch.
   */
  markGeneration(family: NftFamily, name: string): void {
    this.tableMessage(family, NFT_MSG.NEWTABLE, NLM_F.CREATE | NLM_F.ECHO, `table ${family} ${name}`, name);
  }

  deleteTable(family: NftFamily, name: string): void {
    this.tableMessage(family, NFT_MSG.DELTABLE, 0, `delete of table ${family} ${name}`, name);
  }

  addChain(family: NftFamily, table: string, chain: Chain, origin = ''): void {
    const a = this.attrs.chain;
    const w = this.writer;
    this.message('chain', family, NFT_MSG.NEWCHAIN, NLM_F.CREATE, `chain ${chain.name}${origin}`);
    w.attrString(a.table, table);
    w.attrString(a.name, chain.name);
    if (chain.base) {
      w.attrU32(a.hooknum, HOOKS[chain.base.hook]);
      w.attrU32(a.prio, chain.base.priority);
      w.attrU32(a.policy, NF_VERDICT[chain.base.policy]);
      w.attrString(a.type, chain.base.type);
    }
    w.closeList();
  }

  deleteChain(family: NftFamily, table: string, chain: string): void {
    const a = this.attrs.chain;
    this.message('chain', family, NFT_MSG.DELCHAIN, 0, `delete of chain ${chain}`);
    this.writer.attrString(a.table, table);
    this.writer.attrString(a.name, chain);
    this.writer.closeList();
  }

  /** A rule message's attributes, then the opened list of its expressions. */
  private ruleMessage(family: NftFamily, type: number, flags: number, description: string, table: string, chain: string): void {
    const w = this.writer;
    this.message('rule', family, type, flags, description);
    w.attrString(this.attrs.rule.table, table);
    w.attrString(this.attrs.rule.chain, chain);
    w.closeList();
    w.openList();
  }

  /** A DELRULE naming only the chain removes every rule in it. */
  flushChain(family: NftFamily, table: string, chain: string): void {
    this.ruleMessage(family, NFT_MSG.DELRULE, 0, `flush of chain ${chain}`, table, chain);
    this.writer.closeList();
  }

  addRule(family: NftFamily, table: string, chain: string, rule: Rule, origin = ''): void {
    this.newRule(NLM_F.CREATE | NLM_F.APPEND, family, table, chain, rule, `rule in chain ${chain}${origin}`);
  }

  /** Inserts the rule at the head of the chain (so rules prepended in reverse order end up in order). */
  prependRule(family: NftFamily, table: string, chain: string, rule: Rule): void {
    this.newRule(NLM_F.CREATE, family, table, chain, rule, `rule in front of chain ${chain}`);
  }

  private newRule(flags: number, family: NftFamily, table: string, chain: string, rule: Rule, description: string): void {
    this.ruleMessage(family, NFT_MSG.NEWRULE, flags, description, table, chain);
    for (const statement of rule.statements) this.compiledStatement(family, statement);
    this.writer.closeList();
  }

  /**
   * The planner shares (and freezes) statement objects that recur in every service — a protocol
   * match, a numgen step, a mark: their expressions are encoded once and copied after that.
   */
  private compiledStatement(family: NftFamily, statement: Statement): void {
    if (!Object.isFrozen(statement)) return this.statement(family, statement);
    const cache = ENCODED.compiled[family];
    const known = cache.get(statement);
    if (known) {
      this.writer.bytes(known.bytes);
      this.writer.item(known.expressions);
      return;
    }
    const start = this.writer.offset;
    const counted = this.writer.itemCount;
    this.statement(family, statement);
    cache.set(statement, { bytes: this.writer.copyOf(start, this.writer.offset), expressions: this.writer.itemCount - counted });
  }

  addSet(family: NftFamily, table: string, set: NamedSet): void {
    const a = this.attrs.set;
    const w = this.writer;
    this.message('set', family, NFT_MSG.NEWSET, NLM_F.CREATE, `${set.dataType ? 'map' : 'set'} ${set.name}`);
    w.attrString(a.table, table);
    w.attrString(a.name, set.name);
    w.attrU32(a.id, this.nextSetId++);
    w.attrU32(a.keyType, setKeyType(set.keyType));
    w.attrU32(a.keyLen, setKeyLength(set.keyType));
    // nft shows integer keys in the byte order the set's user data names; numgen's are host order.
    if (set.keyType.length === 1 && set.keyType[0] === 'integer') w.attrBytes(a.userdata, HOST_ORDER_KEY_USERDATA);
    // No NFT_SET_CONCAT even for concatenated keys: it selects the pipapo backend, made for
    // interval concatenations; without it the kernel picks a hash, which exact keys want.
    if (set.dynamicTimeoutSeconds) {
      w.attrU32(a.flags, NFT_SET.TIMEOUT | NFT_SET.EVAL);
      w.attrU64(a.timeout, BigInt(set.dynamicTimeoutSeconds) * 1000n);
    } else if (set.dataType === 'verdict') {
      w.attrU32(a.flags, NFT_SET.MAP);
      w.attrU32(a.dataType, NFT_DATA_VERDICT);
    } else if (set.dataType) {
      w.attrU32(a.flags, NFT_SET.MAP);
      w.attrU32(a.dataType, setKeyType(set.dataType));
      w.attrU32(a.dataLen, setKeyLength(set.dataType));
    } else {
      w.attrU32(a.flags, 0);
    }
    w.closeList();
  }

  deleteSet(family: NftFamily, table: string, name: string): void {
    const a = this.attrs.set;
    this.message('set', family, NFT_MSG.DELSET, 0, `delete of set ${name}`);
    this.writer.attrString(a.table, table);
    this.writer.attrString(a.name, name);
    this.writer.closeList();
  }

  addElements(family: NftFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    this.elements(NFT_MSG.NEWSETELEM, NLM_F.CREATE, `elements of ${set.name}`, family, table, set, elements);
  }

  /** A DELSETELEM without elements empties the set. */
  flushSet(family: NftFamily, table: string, set: NamedSet): void {
    this.elements(NFT_MSG.DELSETELEM, 0, `flush of set ${set.name}`, family, table, set, []);
  }

  deleteElements(family: NftFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    this.elements(NFT_MSG.DELSETELEM, 0, `removal of elements from ${set.name}`, family, table, set, elements);
  }

  private elements(type: number, flags: number, description: string, family: NftFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    const a = this.attrs.set;
    const e = this.attrs.elem;
    const w = this.writer;
    this.message('setelems', family, type, flags, description);
    w.attrString(a.table, table);
    w.attrString(a.name, set.name);
    w.closeList();
    const keyLength = setKeyLength(set.keyType);
    const dataType = Array.isArray(set.dataType) ? set.dataType : undefined;
    const dataLength = dataType ? setKeyLength(dataType) : 0;
    w.openList();
    for (const element of elements) {
      w.item();
      w.openList();
      this.attrKey(e.key, set.keyType, keyLength, element.key);
      if (element.data && dataType) this.attrKey(e.data, dataType, dataLength, element.data);
      if (element.verdict) {
        w.attrU32(e.verdict, verdictCode(element.verdict));
        const chain = chainOf(element.verdict);
        if (chain !== undefined) w.attrString(e.chain, chain);
      }
      w.closeList();
    }
    w.closeList();
  }

  /** An element's key or data: the values of `types`, each padded to whole registers when concatenated. */
  private attrKey(id: number, types: DataType[], length: number, values: Value[]): void {
    this.writer.attrHeader(id, length);
    if (types.length === 1) return this.value(types[0], values[0]);
    for (let i = 0; i < types.length; i++) {
      this.value(types[i], values[i]);
      const valueLength = DATATYPE_LENGTHS[types[i]];
      this.writer.zeros(registerWidth(valueLength) - valueLength);
    }
  }

  /** The bytes encodeValue() gives, written without a Buffer per value. */
  private value(type: DataType, value: Value): void {
    if (type === 'ipv4_addr') return this.writer.ipv4(String(value));
    const remembered = ENCODED.fewValued[type];
    if (!remembered) return this.writer.bytes(encodeValue(type, value));
    let bytes = remembered.get(value);
    if (!bytes) remembered.set(value, (bytes = encodeValue(type, value)));
    this.writer.bytes(bytes);
  }

  // ---- rule expressions -------------------------------------------------------------------------

  /** Starts an expression and its attribute list, which the caller writes and closes; returns its attribute ids. */
  private expr(name: string): Record<string, number> {
    const w = this.writer;
    w.item();
    w.bytes(expressionHeader(name));
    w.openList();
    return this.attrs.expr[name];
  }

  private load(field: Field, register: number): void {
    const load = FIELDS[field].load;
    const w = this.writer;
    if (load.expr === 'payload') {
      const a = this.expr('payload');
      w.attrU32(a.dreg, register);
      w.attrU32(a.base, NFT_PAYLOAD_BASE[load.base]);
      w.attrU32(a.offset, load.offset);
      w.attrU32(a.len, load.len);
    } else {
      const a = this.expr('meta');
      w.attrU32(a.key, NFT_META_KEY[load.key]);
      w.attrU32(a.dreg, register);
    }
    w.closeList();
  }

  /** Loads a key into registers: a single field into reg 1, a concatenation into consecutive 32-bit registers. */
  private loadKey(fields: Field[]): number {
    if (fields.length === 1) {
      this.load(fields[0], NFT_REG_1);
      return NFT_REG_1;
    }
    let register = NFT_REG32_00;
    for (const field of fields) {
      this.load(field, register);
      register += registerWidth(FIELDS[field].load.len) / 4;
    }
    return NFT_REG32_00;
  }

  private cmp(op: '==' | '!=', register: number, data: Buffer): void {
    const w = this.writer;
    const a = this.expr('cmp');
    w.attrU32(a.sreg, register);
    w.attrU32(a.op, NFT_CMP[op]);
    w.attrBytes(a.data, data);
    w.closeList();
  }

  private bitwise(register: number, mask: Buffer, xor: Buffer): void {
    const w = this.writer;
    const a = this.expr('bitwise');
    w.attrU32(a.sreg, register);
    w.attrU32(a.dreg, register);
    w.attrU32(a.len, mask.length);
    w.attrBytes(a.mask, mask);
    w.attrBytes(a.xor, xor);
    w.closeList();
  }

  private immediate(register: number, type: DataType, value: Value): void {
    const w = this.writer;
    const a = this.expr('immediate');
    w.attrU32(a.dreg, register);
    w.attrHeader(a.data, DATATYPE_LENGTHS[type]);
    this.value(type, value);
    w.closeList();
  }

  private numgen(register: number, modulus: number): void {
    const w = this.writer;
    const a = this.expr('numgen');
    w.attrU32(a.dreg, register);
    w.attrU32(a.modulus, modulus);
    w.attrU32(a.type, NFT_NG_RANDOM);
    w.attrU32(a.offset, 0);
    w.closeList();
  }

  private dnat(family: TableFamily, addressRegister: number, portRegister: number): void {
    const w = this.writer;
    const a = this.expr('nat');
    w.attrU32(a.type, NFT_NAT_DNAT);
    w.attrU32(a.family, NFPROTO[family]);
    w.attrU32(a.regAddrMin, addressRegister);
    w.attrU32(a.regProtoMin, portRegister);
    w.attrU32(a.flags, NF_NAT_RANGE.MAP_IPS | NF_NAT_RANGE.PROTO_SPECIFIED);
    w.closeList();
  }

  private dnatTo(family: TableFamily, address: string, port: number): void {
    const w = this.writer;
    const addressType = family === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
    const template = ENCODED.dnatTemplates[family].get(port);
    if (template) {
      w.bytes(template.beforeAddress);
      this.value(addressType, address);
      w.bytes(template.afterAddress);
      w.item(template.expressions);
      return;
    }
    const start = w.offset;
    const counted = w.itemCount;
    this.immediate(NFT_REG_1, addressType, address);
    // The address is the last value of the first expression.
    const addressEnd = w.offset;
    this.immediate(NFT_REG_2, 'inet_service', port);
    this.dnat(family, NFT_REG_1, NFT_REG_2);
    ENCODED.dnatTemplates[family].set(port, {
      beforeAddress: w.copyOf(start, addressEnd - DATATYPE_LENGTHS[addressType]),
      afterAddress: w.copyOf(addressEnd, w.offset),
      expressions: w.itemCount - counted,
    });
  }

  /** meta mark set (meta mark & mask) ^ xor */
  private markUpdate(mask: number, xor: number): void {
    const w = this.writer;
    this.load('meta mark', NFT_REG_1);
    this.bitwise(NFT_REG_1, u32(mask), u32(xor));
    const a = this.expr('meta');
    w.attrU32(a.key, NFT_META_KEY.mark);
    w.attrU32(a.sreg, NFT_REG_1);
    w.closeList();
  }

  private ctLoad(key: number): void {
    const w = this.writer;
    const a = this.expr('ct');
    w.attrU32(a.key, key);
    w.attrU32(a.dreg, NFT_REG_1);
    w.closeList();
  }

  private statement(family: NftFamily, statement: Statement): void {
    const w = this.writer;
    switch (statement.kind) {
      case 'match': {
        this.load(statement.field, NFT_REG_1);
        if (typeof statement.value === 'string' && statement.value.includes('/')) {
          const { network, mask } = encodePrefix(statement.value);
          this.bitwise(NFT_REG_1, mask, Buffer.alloc(mask.length));
          this.cmp(statement.op, NFT_REG_1, network);
        } else {
          this.cmp(statement.op, NFT_REG_1, encodeValue(FIELDS[statement.field].type, statement.value));
        }
        return;
      }
      case 'markMatch':
        this.load('meta mark', NFT_REG_1);
        this.bitwise(NFT_REG_1, u32(statement.mask), u32(0));
        this.cmp(statement.op, NFT_REG_1, u32(statement.value));
        return;
      case 'numgen':
        this.numgen(NFT_REG_1, statement.modulus);
        this.cmp('==', NFT_REG_1, u32(statement.equals));
        return;
      case 'lookup':
      case 'vmap': {
        const register = this.loadKey(statement.fields);
        if (statement.kind === 'vmap' && statement.mask) {
          const mask = encodeAddress(statement.mask);
          this.bitwise(register, mask, Buffer.alloc(mask.length));
        }
        const a = this.expr('lookup');
        w.attrU32(a.sreg, register);
        if (statement.kind === 'vmap') {
          w.attrString(a.set, statement.map);
          w.attrU32(a.dreg, NFT_REG_VERDICT);
        } else {
          w.attrString(a.set, statement.set);
          w.attrU32(a.flags, statement.op === '!=' ? NFT_LOOKUP_F_INV : 0);
        }
        w.closeList();
        return;
      }
      case 'markSet':
        return this.markUpdate(~statement.or, statement.or);
      case 'markToggle':
        return this.markUpdate(0xffffffff, statement.xor);
      case 'ctStateNew':
        this.ctLoad(NFT_CT_STATE);
        this.bitwise(NFT_REG_1, u32(NF_CT_STATE_NEW), u32(0));
        this.cmp('!=', NFT_REG_1, u32(0));
        return;
      case 'ctLabelMatch': {
        this.ctLoad(NFT_CT_LABELS);
        const none = Buffer.alloc(NF_CT_LABELS_LENGTH);
        this.bitwise(NFT_REG_1, labelBit(statement.label), none);
        this.cmp('!=', NFT_REG_1, none);
        return;
      }
      case 'ctLabelSet': {
        const immediate = this.expr('immediate');
        w.attrU32(immediate.dreg, NFT_REG_1);
        w.attrBytes(immediate.data, labelBit(statement.label));
        w.closeList();
        const a = this.expr('ct');
        w.attrU32(a.key, NFT_CT_LABELS);
        w.attrU32(a.sreg, NFT_REG_1);
        w.closeList();
        return;
      }
      case 'fibLocal': {
        const a = this.expr('fib');
        w.attrU32(a.dreg, NFT_REG_1);
        w.attrU32(a.result, NFT_FIB_RESULT_ADDRTYPE);
        w.attrU32(a.flags, NFTA_FIB_F[statement.address]);
        w.closeList();
        this.cmp(statement.op, NFT_REG_1, u32(RTN_LOCAL));
        return;
      }
      case 'setUpdate': {
        this.load(statement.field, NFT_REG_1);
        const a = this.expr('dynset');
        w.attrU32(a.sregKey, NFT_REG_1);
        w.attrU32(a.op, NFT_DYNSET_OP_UPDATE);
        w.attrString(a.setName, statement.set);
        w.closeList();
        return;
      }
      case 'dnat':
        return this.dnatTo(addressFamily(family, statement), statement.address, statement.port);
      case 'dnatMap': {
        const addressLength = statement.family === 'ip' ? 4 : 16;
        this.numgen(NFT_REG32_00, statement.modulus);
        // The map's data, address . port, lands in consecutive 32-bit registers from reg32 0.
        const a = this.expr('lookup');
        w.attrU32(a.sreg, NFT_REG32_00);
        w.attrU32(a.dreg, NFT_REG32_00);
        w.attrString(a.set, statement.map);
        w.closeList();
        this.dnat(statement.family, NFT_REG32_00, NFT_REG32_00 + addressLength / 4);
        return;
      }
      case 'redirect': {
        this.immediate(NFT_REG_1, 'inet_service', statement.port);
        const a = this.expr('redir');
        w.attrU32(a.regProtoMin, NFT_REG_1);
        w.attrU32(a.flags, NF_NAT_RANGE.PROTO_SPECIFIED);
        w.closeList();
        return;
      }
      case 'masquerade': {
        const a = this.expr('masq');
        w.attrU32(a.flags, NF_NAT_RANGE.PROTO_RANDOM_FULLY);
        w.closeList();
        return;
      }
      case 'reject': {
        const a = this.expr('reject');
        w.attrU32(a.type, NFT_REJECT_ICMP_UNREACH);
        w.attrU8(a.code, ICMP_PORT_UNREACH[addressFamily(family, statement)]);
        w.closeList();
        return;
      }
      case 'socket': {
        const a = this.expr('socket');
        w.attrU32(a.key, NFT_SOCKET_KEY[statement.key]);
        w.attrU32(a.dreg, NFT_REG_1);
        w.closeList();
        this.cmp('==', NFT_REG_1, Buffer.from([statement.value ? 1 : 0]));
        return;
      }
      case 'notrack':
        this.expr('notrack');
        w.closeList();
        return;
      case 'verdict': {
        const a = this.expr('immediate');
        w.attrU32(a.dreg, NFT_REG_VERDICT);
        w.attrU32(a.verdict, verdictCode(statement.verdict));
        const chain = chainOf(statement.verdict);
        if (chain !== undefined) w.attrString(a.chain, chain);
        w.closeList();
        return;
      }
    }
  }
}
