#include "attrs.h"

#include <map>

#include <linux/netfilter/nf_tables.h>

#include "netlink.h"

namespace knft {
namespace {

#define OBJ(kind, name, id, type) {Kind::kind, nullptr, name, id, AttrType::type}
#define EXPR(expr, name, id, type) {Kind::Expr, expr, name, id, AttrType::type}

// The one place libnftnl attribute numbers live; TypeScript reads them from
// the exported `attributes` object.
const AttrSpec kAttrs[] = {
    OBJ(Table, "name", NFTNL_TABLE_NAME, Str),
    OBJ(Table, "flags", NFTNL_TABLE_FLAGS, U32),
    OBJ(Table, "userdata", NFTNL_TABLE_USERDATA, Bytes),

    OBJ(Chain, "name", NFTNL_CHAIN_NAME, Str),
    OBJ(Chain, "table", NFTNL_CHAIN_TABLE, Str),
    OBJ(Chain, "hooknum", NFTNL_CHAIN_HOOKNUM, U32),
    OBJ(Chain, "prio", NFTNL_CHAIN_PRIO, U32),
    OBJ(Chain, "policy", NFTNL_CHAIN_POLICY, U32),
    OBJ(Chain, "type", NFTNL_CHAIN_TYPE, Str),
    OBJ(Chain, "flags", NFTNL_CHAIN_FLAGS, U32),
    OBJ(Chain, "userdata", NFTNL_CHAIN_USERDATA, Bytes),
    OBJ(Chain, "handle", NFTNL_CHAIN_HANDLE, U64),

    OBJ(Rule, "table", NFTNL_RULE_TABLE, Str),
    OBJ(Rule, "chain", NFTNL_RULE_CHAIN, Str),
    OBJ(Rule, "handle", NFTNL_RULE_HANDLE, U64),
    OBJ(Rule, "position", NFTNL_RULE_POSITION, U64),
    OBJ(Rule, "userdata", NFTNL_RULE_USERDATA, Bytes),

    OBJ(Set, "table", NFTNL_SET_TABLE, Str),
    OBJ(Set, "name", NFTNL_SET_NAME, Str),
    OBJ(Set, "flags", NFTNL_SET_FLAGS, U32),
    OBJ(Set, "keyType", NFTNL_SET_KEY_TYPE, U32),
    OBJ(Set, "keyLen", NFTNL_SET_KEY_LEN, U32),
    OBJ(Set, "dataType", NFTNL_SET_DATA_TYPE, U32),
    OBJ(Set, "dataLen", NFTNL_SET_DATA_LEN, U32),
    OBJ(Set, "id", NFTNL_SET_ID, U32),
    OBJ(Set, "policy", NFTNL_SET_POLICY, U32),
    OBJ(Set, "descSize", NFTNL_SET_DESC_SIZE, U32),
    OBJ(Set, "timeout", NFTNL_SET_TIMEOUT, U64),
    OBJ(Set, "gcInterval", NFTNL_SET_GC_INTERVAL, U32),
    OBJ(Set, "userdata", NFTNL_SET_USERDATA, Bytes),
    OBJ(Set, "handle", NFTNL_SET_HANDLE, U64),

    OBJ(Elem, "flags", NFTNL_SET_ELEM_FLAGS, U32),
    OBJ(Elem, "key", NFTNL_SET_ELEM_KEY, Data),
    OBJ(Elem, "keyEnd", NFTNL_SET_ELEM_KEY_END, Data),
    OBJ(Elem, "data", NFTNL_SET_ELEM_DATA, Data),
    OBJ(Elem, "verdict", NFTNL_SET_ELEM_VERDICT, U32),
    OBJ(Elem, "chain", NFTNL_SET_ELEM_CHAIN, Str),
    OBJ(Elem, "timeout", NFTNL_SET_ELEM_TIMEOUT, U64),
    OBJ(Elem, "expiration", NFTNL_SET_ELEM_EXPIRATION, U64),
    OBJ(Elem, "userdata", NFTNL_SET_ELEM_USERDATA, Bytes),

    EXPR("payload", "dreg", NFTNL_EXPR_PAYLOAD_DREG, U32),
    EXPR("payload", "base", NFTNL_EXPR_PAYLOAD_BASE, U32),
    EXPR("payload", "offset", NFTNL_EXPR_PAYLOAD_OFFSET, U32),
    EXPR("payload", "len", NFTNL_EXPR_PAYLOAD_LEN, U32),
    EXPR("payload", "sreg", NFTNL_EXPR_PAYLOAD_SREG, U32),
    EXPR("payload", "csumType", NFTNL_EXPR_PAYLOAD_CSUM_TYPE, U32),
    EXPR("payload", "csumOffset", NFTNL_EXPR_PAYLOAD_CSUM_OFFSET, U32),
    EXPR("payload", "flags", NFTNL_EXPR_PAYLOAD_FLAGS, U32),
    EXPR("cmp", "sreg", NFTNL_EXPR_CMP_SREG, U32),
    EXPR("cmp", "op", NFTNL_EXPR_CMP_OP, U32),
    EXPR("cmp", "data", NFTNL_EXPR_CMP_DATA, Data),
    EXPR("meta", "key", NFTNL_EXPR_META_KEY, U32),
    EXPR("meta", "dreg", NFTNL_EXPR_META_DREG, U32),
    EXPR("meta", "sreg", NFTNL_EXPR_META_SREG, U32),
    EXPR("immediate", "dreg", NFTNL_EXPR_IMM_DREG, U32),
    EXPR("immediate", "data", NFTNL_EXPR_IMM_DATA, Data),
    EXPR("immediate", "verdict", NFTNL_EXPR_IMM_VERDICT, U32),
    EXPR("immediate", "chain", NFTNL_EXPR_IMM_CHAIN, Str),
    EXPR("lookup", "sreg", NFTNL_EXPR_LOOKUP_SREG, U32),
    EXPR("lookup", "dreg", NFTNL_EXPR_LOOKUP_DREG, U32),
    EXPR("lookup", "set", NFTNL_EXPR_LOOKUP_SET, Str),
    EXPR("lookup", "setId", NFTNL_EXPR_LOOKUP_SET_ID, U32),
    EXPR("lookup", "flags", NFTNL_EXPR_LOOKUP_FLAGS, U32),
    EXPR("numgen", "dreg", NFTNL_EXPR_NG_DREG, U32),
    EXPR("numgen", "modulus", NFTNL_EXPR_NG_MODULUS, U32),
    EXPR("numgen", "type", NFTNL_EXPR_NG_TYPE, U32),
    EXPR("numgen", "offset", NFTNL_EXPR_NG_OFFSET, U32),
    EXPR("nat", "type", NFTNL_EXPR_NAT_TYPE, U32),
    EXPR("nat", "family", NFTNL_EXPR_NAT_FAMILY, U32),
    EXPR("nat", "regAddrMin", NFTNL_EXPR_NAT_REG_ADDR_MIN, U32),
    EXPR("nat", "regAddrMax", NFTNL_EXPR_NAT_REG_ADDR_MAX, U32),
    EXPR("nat", "regProtoMin", NFTNL_EXPR_NAT_REG_PROTO_MIN, U32),
    EXPR("nat", "regProtoMax", NFTNL_EXPR_NAT_REG_PROTO_MAX, U32),
    EXPR("nat", "flags", NFTNL_EXPR_NAT_FLAGS, U32),
    EXPR("redir", "regProtoMin", NFTNL_EXPR_REDIR_REG_PROTO_MIN, U32),
    EXPR("redir", "regProtoMax", NFTNL_EXPR_REDIR_REG_PROTO_MAX, U32),
    EXPR("redir", "flags", NFTNL_EXPR_REDIR_FLAGS, U32),
    EXPR("masq", "flags", NFTNL_EXPR_MASQ_FLAGS, U32),
    EXPR("masq", "regProtoMin", NFTNL_EXPR_MASQ_REG_PROTO_MIN, U32),
    EXPR("masq", "regProtoMax", NFTNL_EXPR_MASQ_REG_PROTO_MAX, U32),
    EXPR("bitwise", "sreg", NFTNL_EXPR_BITWISE_SREG, U32),
    EXPR("bitwise", "dreg", NFTNL_EXPR_BITWISE_DREG, U32),
    EXPR("bitwise", "len", NFTNL_EXPR_BITWISE_LEN, U32),
    EXPR("bitwise", "mask", NFTNL_EXPR_BITWISE_MASK, Data),
    EXPR("bitwise", "xor", NFTNL_EXPR_BITWISE_XOR, Data),
    EXPR("ct", "key", NFTNL_EXPR_CT_KEY, U32),
    EXPR("ct", "dreg", NFTNL_EXPR_CT_DREG, U32),
    EXPR("ct", "dir", NFTNL_EXPR_CT_DIR, U8),  // uint8_t in libnftnl
    EXPR("ct", "sreg", NFTNL_EXPR_CT_SREG, U32),
    EXPR("counter", "packets", NFTNL_EXPR_CTR_PACKETS, U64),
    EXPR("counter", "bytes", NFTNL_EXPR_CTR_BYTES, U64),
    EXPR("reject", "type", NFTNL_EXPR_REJECT_TYPE, U32),
    EXPR("reject", "code", NFTNL_EXPR_REJECT_CODE, U8),  // uint8_t in libnftnl
    EXPR("dynset", "sregKey", NFTNL_EXPR_DYNSET_SREG_KEY, U32),
    EXPR("dynset", "sregData", NFTNL_EXPR_DYNSET_SREG_DATA, U32),
    EXPR("dynset", "op", NFTNL_EXPR_DYNSET_OP, U32),
    EXPR("dynset", "timeout", NFTNL_EXPR_DYNSET_TIMEOUT, U64),
    EXPR("dynset", "setName", NFTNL_EXPR_DYNSET_SET_NAME, Str),
    EXPR("dynset", "setId", NFTNL_EXPR_DYNSET_SET_ID, U32),
    EXPR("range", "sreg", NFTNL_EXPR_RANGE_SREG, U32),
    EXPR("range", "op", NFTNL_EXPR_RANGE_OP, U32),
    EXPR("range", "fromData", NFTNL_EXPR_RANGE_FROM_DATA, Data),
    EXPR("range", "toData", NFTNL_EXPR_RANGE_TO_DATA, Data),
    EXPR("fib", "dreg", NFTNL_EXPR_FIB_DREG, U32),
    EXPR("fib", "result", NFTNL_EXPR_FIB_RESULT, U32),
    EXPR("fib", "flags", NFTNL_EXPR_FIB_FLAGS, U32),
    EXPR("socket", "key", NFTNL_EXPR_SOCKET_KEY, U32),
    EXPR("socket", "dreg", NFTNL_EXPR_SOCKET_DREG, U32),
    EXPR("socket", "level", NFTNL_EXPR_SOCKET_LEVEL, U32),
    // notrack has no attributes: the compiler allocates any expression libnftnl knows by name.
};

#undef OBJ
#undef EXPR

const char* KindName(Kind kind) {
  static const char* names[] = {"table", "chain", "rule", "set", "elem", "expr"};
  return names[static_cast<int>(kind)];
}

struct Index {
  AttrIndex objects[static_cast<int>(Kind::Expr)];
  // Transparent comparison: looked up by a view into the transaction, without a string copy.
  std::map<std::string, AttrIndex, std::less<>> exprs;

  Index() {
    for (const AttrSpec& s : kAttrs) {
      AttrIndex& idx = s.kind == Kind::Expr ? exprs[s.expr] : objects[static_cast<int>(s.kind)];
      idx.byId[s.id] = &s;
    }
  }
};

const Index& GetIndex() {
  static const Index index;  // thread-safe initialisation; read-only afterwards
  return index;
}

}  // namespace

const AttrIndex& ObjectAttrs(Kind kind) { return GetIndex().objects[static_cast<int>(kind)]; }

const AttrIndex* ExprAttrs(std::string_view expr) {
  const auto& exprs = GetIndex().exprs;
  auto it = exprs.find(expr);
  return it == exprs.end() ? nullptr : &it->second;
}

std::string CheckAttr(const AttrSpec& spec, const uint8_t* data, uint32_t len) {
  auto want = [&](uint32_t n) {
    return len == n ? std::string()
                    : "attribute " + std::string(spec.name) + " must be " + std::to_string(n) +
                          " bytes, got " + std::to_string(len);
  };
  switch (spec.type) {
    case AttrType::U8: return want(1);
    case AttrType::U32: return want(4);
    case AttrType::U64: return want(8);
    case AttrType::Str:
      if (len == 0 || data[len - 1] != 0)
        return "attribute " + std::string(spec.name) + " must be a NUL-terminated string";
      return "";
    case AttrType::Data:
      if (len > NFT_DATA_VALUE_MAXLEN)
        return "attribute " + std::string(spec.name) + " longer than " +
               std::to_string(NFT_DATA_VALUE_MAXLEN) + " bytes";
      return "";
    case AttrType::Bytes: return "";
  }
  return "bad attribute type";
}

Napi::Object Attributes(Napi::Env env) {
  Napi::Object root = Napi::Object::New(env);
  Napi::Object exprs = Napi::Object::New(env);
  root.Set("expr", exprs);
  auto child = [&env](Napi::Object parent, const char* key) {
    if (!parent.Has(key)) parent.Set(key, Napi::Object::New(env));
    return parent.Get(key).As<Napi::Object>();
  };
  for (const AttrSpec& s : kAttrs) {
    Napi::Object obj = s.kind == Kind::Expr ? child(exprs, s.expr) : child(root, KindName(s.kind));
    obj.Set(s.name, Napi::Number::New(env, s.id));
  }
  return root;
}

}  // namespace knft
