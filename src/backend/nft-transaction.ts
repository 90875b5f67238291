import { DATATYPE_IDS, DATATYPE_LENGTHS, FIELDS, encodeKey, encodePrefix, encodeValue, registerWidth } from '../plan/fields.js';
import type { Chain, DataType, Field, NamedSet, Rule, SetElement, Statement, TableFamily, Verdict } from '../plan/ruleset.js';
import type { NativeAttributes } from './native.js';
import {
  CONCAT_TYPE_BITS, HOOKS, ICMP_PORT_UNREACH, NFPROTO, NFTA_FIB_F, NFT_CMP, NFT_CT_STATE, NFT_DATA_VERDICT, NFT_DYNSET_OP_UPDATE,
  NFT_FIB_RESULT_ADDRTYPE, NFT_LOOKUP_F_INV, NFT_META_KEY, NFT_MSG, NFT_NAT_DNAT, NFT_NG_RANDOM, NFT_PAYLOAD_BASE, NFT_REG32_00,
  NFT_REG_1, NFT_REG_2, NFT_REG_VERDICT, NFT_REJECT_ICMP_UNREACH, NFT_SET, NFT_VERDICT, NF_CT_STATE_NEW, NF_NAT_RANGE, NF_VERDICT,
  NLM_F, RTN_LOCAL,
} from './uapi.js';
import { OBJECT_KIND, type ObjectKind, WireWriter } from './wire.js';

const constants = new Map<number, Buffer>();

/** A host-order u32 as bytes; the values are a few constants (marks, masks, 0), so each is made once. */
const u32 = (value: number) => {
  let buffer = constants.get(value);
  if (!buffer) {
    buffer = Buffer.alloc(4);
    buffer.writeUInt32LE(value >>> 0);
    constants.set(value, buffer);
  }
  return buffer;
};

export const setKeyType = (types: DataType[]) =>
  types.reduce((packed, type) => (packed << CONCAT_TYPE_BITS) | DATATYPE_IDS[type], 0);

export const setKeyLength = (types: DataType[]) =>
  types.length === 1 ? DATATYPE_LENGTHS[types[0]] : types.reduce((sum, type) => sum + registerWidth(DATATYPE_LENGTHS[type]), 0);

const verdictCode = (verdict: Verdict) =>
  verdict.kind === 'accept' || verdict.kind === 'drop' ? NF_VERDICT[verdict.kind] : NFT_VERDICT[verdict.kind];

const expressionNames = new Map<string, Buffer>();

/** Encoded expressions by statement object, per family (a reject or dnat encodes differently in each). */
const COMPILED: Record<TableFamily, WeakMap<Statement, { bytes: Buffer; expressions: number }>> = { ip: new WeakMap(), ip6: new WeakMap() };

/** libnftnl user data TLV: NFTNL_UDATA_SET_KEYBYTEORDER (0), 4 bytes, BYTEORDER_HOST_ENDIAN (1). */
const HOST_ORDER_KEY_USERDATA = Buffer.from([0, 4, 1, 0, 0, 0]);

const chainOf = (verdict: Verdict) => (verdict.kind === 'jump' || verdict.kind === 'goto' ? verdict.chain : undefined);

/**
 * One nftables transaction in the addon's wire format. Every message remembers what it was, so a
 * kernel error against message N can name the object (and the Kubernetes object behind it).
 */
export class NftTransaction {
  private readonly writer = new WireWriter();
  private readonly descriptions: string[] = [];
  /** The kernel requires every new set to carry a transaction-unique id (NFTA_SET_ID). */
  private nextSetId = 1;

  constructor(private readonly attrs: NativeAttributes) {
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

  private message(kind: ObjectKind, family: TableFamily, type: number, flags: number, description: string, attrs: () => void): void {
    const w = this.writer;
    w.u8(OBJECT_KIND[kind]);
    w.u8(NFPROTO[family]);
    w.u16(type);
    w.u16(flags);
    w.u16(0);
    w.list(attrs);
    this.descriptions.push(description);
  }

  addTable(family: TableFamily, name: string): void {
    this.message('table', family, NFT_MSG.NEWTABLE, NLM_F.CREATE, `table ${family} ${name}`, () => this.writer.attrString(this.attrs.table.name, name));
  }

  /**
   * A no-op (create-if-missing) table message asking for an echo: the kernel then reports the
   * generation this transaction commits, which tells our own commits from anyone else's.
   * It must be the first message of the batch.
   */
  markGeneration(family: TableFamily, name: string): void {
    this.message('table', family, NFT_MSG.NEWTABLE, NLM_F.CREATE | NLM_F.ECHO, `table ${family} ${name}`, () => this.writer.attrString(this.attrs.table.name, name));
  }

  deleteTable(family: TableFamily, name: string): void {
    this.message('table', family, NFT_MSG.DELTABLE, 0, `delete of table ${family} ${name}`, () => this.writer.attrString(this.attrs.table.name, name));
  }

  addChain(family: TableFamily, table: string, chain: Chain, origin = ''): void {
    const a = this.attrs.chain;
    const w = this.writer;
    this.message('chain', family, NFT_MSG.NEWCHAIN, NLM_F.CREATE, `chain ${chain.name}${origin}`, () => {
      w.attrString(a.table, table);
      w.attrString(a.name, chain.name);
      if (!chain.base) return;
      w.attrU32(a.hooknum, HOOKS[chain.base.hook]);
      w.attrU32(a.prio, chain.base.priority);
      w.attrU32(a.policy, NF_VERDICT[chain.base.policy]);
      w.attrString(a.type, chain.base.type);
    });
  }

  deleteChain(family: TableFamily, table: string, chain: string): void {
    const a = this.attrs.chain;
    this.message('chain', family, NFT_MSG.DELCHAIN, 0, `delete of chain ${chain}`, () => {
      this.writer.attrString(a.table, table);
      this.writer.attrString(a.name, chain);
    });
  }

  private ruleTarget(table: string, chain: string): void {
    this.writer.attrString(this.attrs.rule.table, table);
    this.writer.attrString(this.attrs.rule.chain, chain);
  }

  /** A DELRULE naming only the chain removes every rule in it. */
  flushChain(family: TableFamily, table: string, chain: string): void {
    this.message('rule', family, NFT_MSG.DELRULE, 0, `flush of chain ${chain}`, () => this.ruleTarget(table, chain));
    this.writer.list(() => undefined);
  }

  addRule(family: TableFamily, table: string, chain: string, rule: Rule, origin = ''): void {
    this.newRule(NLM_F.CREATE | NLM_F.APPEND, family, table, chain, rule, `rule in chain ${chain}${origin}`);
  }

  /** Inserts the rule at the head of the chain (so rules prepended in reverse order end up in order). */
  prependRule(family: TableFamily, table: string, chain: string, rule: Rule): void {
    this.newRule(NLM_F.CREATE, family, table, chain, rule, `rule in front of chain ${chain}`);
  }

  private newRule(flags: number, family: TableFamily, table: string, chain: string, rule: Rule, description: string): void {
    this.message('rule', family, NFT_MSG.NEWRULE, flags, description, () => this.ruleTarget(table, chain));
    this.writer.list(() => {
      for (const statement of rule.statements) this.compiledStatement(family, statement);
    });
  }

  /**
   * The planner shares (and freezes) statement objects that recur in every service — a protocol
   * match, a numgen step, a mark: their expressions are encoded once and copied after that.
   */
  private compiledStatement(family: TableFamily, statement: Statement): void {
    if (!Object.isFrozen(statement)) return this.statement(family, statement);
    const cache = COMPILED[family];
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

  addSet(family: TableFamily, table: string, set: NamedSet): void {
    const a = this.attrs.set;
    const w = this.writer;
    this.message('set', family, NFT_MSG.NEWSET, NLM_F.CREATE, `${set.dataType ? 'map' : 'set'} ${set.name}`, () => {
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
    });
  }

  deleteSet(family: TableFamily, table: string, name: string): void {
    const a = this.attrs.set;
    this.message('set', family, NFT_MSG.DELSET, 0, `delete of set ${name}`, () => {
      this.writer.attrString(a.table, table);
      this.writer.attrString(a.name, name);
    });
  }

  addElements(family: TableFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    this.elements(NFT_MSG.NEWSETELEM, NLM_F.CREATE, `elements of ${set.name}`, family, table, set, elements);
  }

  /** A DELSETELEM without elements empties the set. */
  flushSet(family: TableFamily, table: string, set: NamedSet): void {
    this.elements(NFT_MSG.DELSETELEM, 0, `flush of set ${set.name}`, family, table, set, []);
  }

  deleteElements(family: TableFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    this.elements(NFT_MSG.DELSETELEM, 0, `removal of elements from ${set.name}`, family, table, set, elements);
  }

  private elements(type: number, flags: number, description: string, family: TableFamily, table: string, set: NamedSet, elements: SetElement[]): void {
    const a = this.attrs.set;
    const e = this.attrs.elem;
    const w = this.writer;
    this.message('setelems', family, type, flags, description, () => {
      w.attrString(a.table, table);
      w.attrString(a.name, set.name);
    });
    w.list(() => {
      for (const element of elements) {
        w.item();
        w.list(() => {
          w.attrBytes(e.key, encodeKey(set.keyType, element.key));
          if (element.data && Array.isArray(set.dataType)) w.attrBytes(e.data, encodeKey(set.dataType, element.data));
          if (!element.verdict) return;
          w.attrU32(e.verdict, verdictCode(element.verdict));
          const chain = chainOf(element.verdict);
          if (chain !== undefined) w.attrString(e.chain, chain);
        });
      }
    });
  }

  // ---- rule expressions -------------------------------------------------------------------------

  private expr(name: string, attrs: (ids: Record<string, number>) => void): void {
    const w = this.writer;
    w.item();
    w.u8(name.length);
    w.bytes(expressionNames.get(name) ?? expressionNames.set(name, Buffer.from(name)).get(name)!);
    w.list(() => attrs(this.attrs.expr[name]));
  }

  private load(field: Field, register: number): void {
    const load = FIELDS[field].load;
    const w = this.writer;
    if (load.expr === 'payload') {
      this.expr('payload', (a) => {
        w.attrU32(a.dreg, register);
        w.attrU32(a.base, NFT_PAYLOAD_BASE[load.base]);
        w.attrU32(a.offset, load.offset);
        w.attrU32(a.len, load.len);
      });
      return;
    }
    this.expr('meta', (a) => {
      w.attrU32(a.key, NFT_META_KEY[load.key]);
      w.attrU32(a.dreg, register);
    });
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
    this.expr('cmp', (a) => {
      this.writer.attrU32(a.sreg, register);
      this.writer.attrU32(a.op, NFT_CMP[op]);
      this.writer.attrBytes(a.data, data);
    });
  }

  private bitwise(register: number, mask: Buffer, xor: Buffer): void {
    this.expr('bitwise', (a) => {
      const w = this.writer;
      w.attrU32(a.sreg, register);
      w.attrU32(a.dreg, register);
      w.attrU32(a.len, mask.length);
      w.attrBytes(a.mask, mask);
      w.attrBytes(a.xor, xor);
    });
  }

  private immediate(register: number, data: Buffer): void {
    this.expr('immediate', (a) => {
      this.writer.attrU32(a.dreg, register);
      this.writer.attrBytes(a.data, data);
    });
  }

  /** meta mark set (meta mark & mask) ^ xor */
  private markUpdate(mask: number, xor: number): void {
    this.load('meta mark', NFT_REG_1);
    this.bitwise(NFT_REG_1, u32(mask), u32(xor));
    this.expr('meta', (a) => {
      this.writer.attrU32(a.key, NFT_META_KEY.mark);
      this.writer.attrU32(a.sreg, NFT_REG_1);
    });
  }

  private statement(family: TableFamily, statement: Statement): void {
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
        this.expr('numgen', (a) => {
          w.attrU32(a.dreg, NFT_REG_1);
          w.attrU32(a.modulus, statement.modulus);
          w.attrU32(a.type, NFT_NG_RANDOM);
          w.attrU32(a.offset, 0);
        });
        this.cmp('==', NFT_REG_1, u32(statement.equals));
        return;
      case 'lookup':
      case 'vmap': {
        const register = this.loadKey(statement.fields);
        this.expr('lookup', (a) => {
          w.attrU32(a.sreg, register);
          if (statement.kind === 'vmap') {
            w.attrString(a.set, statement.map);
            w.attrU32(a.dreg, NFT_REG_VERDICT);
          } else {
            w.attrString(a.set, statement.set);
            w.attrU32(a.flags, statement.op === '!=' ? NFT_LOOKUP_F_INV : 0);
          }
        });
        return;
      }
      case 'markSet':
        return this.markUpdate(~statement.or, statement.or);
      case 'markToggle':
        return this.markUpdate(0xffffffff, statement.xor);
      case 'ctStateNew':
        this.expr('ct', (a) => {
          w.attrU32(a.key, NFT_CT_STATE);
          w.attrU32(a.dreg, NFT_REG_1);
        });
        this.bitwise(NFT_REG_1, u32(NF_CT_STATE_NEW), u32(0));
        this.cmp('!=', NFT_REG_1, u32(0));
        return;
      case 'fibLocal':
        this.expr('fib', (a) => {
          w.attrU32(a.dreg, NFT_REG_1);
          w.attrU32(a.result, NFT_FIB_RESULT_ADDRTYPE);
          w.attrU32(a.flags, NFTA_FIB_F[statement.address]);
        });
        this.cmp(statement.op, NFT_REG_1, u32(RTN_LOCAL));
        return;
      case 'setUpdate':
        this.load(statement.field, NFT_REG_1);
        this.expr('dynset', (a) => {
          w.attrU32(a.sregKey, NFT_REG_1);
          w.attrU32(a.op, NFT_DYNSET_OP_UPDATE);
          w.attrString(a.setName, statement.set);
        });
        return;
      case 'dnat':
        this.immediate(NFT_REG_1, encodeValue(family === 'ip' ? 'ipv4_addr' : 'ipv6_addr', statement.address));
        this.immediate(NFT_REG_2, encodeValue('inet_service', statement.port));
        this.expr('nat', (a) => {
          w.attrU32(a.type, NFT_NAT_DNAT);
          w.attrU32(a.family, NFPROTO[family]);
          w.attrU32(a.regAddrMin, NFT_REG_1);
          w.attrU32(a.regProtoMin, NFT_REG_2);
          w.attrU32(a.flags, NF_NAT_RANGE.MAP_IPS | NF_NAT_RANGE.PROTO_SPECIFIED);
        });
        return;
      case 'dnatMap': {
        const addressLength = statement.family === 'ip' ? 4 : 16;
        this.expr('numgen', (a) => {
          w.attrU32(a.dreg, NFT_REG32_00);
          w.attrU32(a.modulus, statement.modulus);
          w.attrU32(a.type, NFT_NG_RANDOM);
          w.attrU32(a.offset, 0);
        });
        // The map's data, address . port, lands in consecutive 32-bit registers from reg32 0.
        this.expr('lookup', (a) => {
          w.attrU32(a.sreg, NFT_REG32_00);
          w.attrU32(a.dreg, NFT_REG32_00);
          w.attrString(a.set, statement.map);
        });
        this.expr('nat', (a) => {
          w.attrU32(a.type, NFT_NAT_DNAT);
          w.attrU32(a.family, NFPROTO[statement.family]);
          w.attrU32(a.regAddrMin, NFT_REG32_00);
          w.attrU32(a.regProtoMin, NFT_REG32_00 + addressLength / 4);
          w.attrU32(a.flags, NF_NAT_RANGE.MAP_IPS | NF_NAT_RANGE.PROTO_SPECIFIED);
        });
        return;
      }
      case 'masquerade':
        this.expr('masq', (a) => w.attrU32(a.flags, NF_NAT_RANGE.PROTO_RANDOM_FULLY));
        return;
      case 'reject':
        this.expr('reject', (a) => {
          w.attrU32(a.type, NFT_REJECT_ICMP_UNREACH);
          w.attrU8(a.code, ICMP_PORT_UNREACH[family]);
        });
        return;
      case 'verdict':
        this.expr('immediate', (a) => {
          w.attrU32(a.dreg, NFT_REG_VERDICT);
          w.attrU32(a.verdict, verdictCode(statement.verdict));
          const chain = chainOf(statement.verdict);
          if (chain !== undefined) w.attrString(a.chain, chain);
        });
        return;
    }
  }
}
