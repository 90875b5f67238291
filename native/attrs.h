// The libnftnl attributes the transaction format may use, with the width
// libnftnl expects for each.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace knft {

enum class Kind : uint8_t { Table, Chain, Rule, Set, Elem, Expr };

enum class AttrType : uint8_t {
  U8,
  U32,
  U64,
  Str,    // NUL-terminated
  Bytes,  // opaque (userdata)
  Data,   // copied into a fixed nftnl data register: at most NFT_DATA_VALUE_MAXLEN
};

struct AttrSpec {
  Kind kind;
  const char* expr;  // expression name for Kind::Expr, else nullptr
  const char* name;  // JS name
  uint16_t id;       // NFTNL_* value
  AttrType type;
};

// Attribute ids of one object kind or one expression, indexed by id.
// libnftnl tracks set attributes in a 32-bit mask, so ids are < 32.
struct AttrIndex {
  const AttrSpec* byId[32] = {};
};

const AttrIndex& ObjectAttrs(Kind kind);
// nullptr for expressions the table does not list.
const AttrIndex* ExprAttrs(std::string_view expr);

// Returns an error text, or "" when `len` bytes at `data` are acceptable for
// `spec`. libnftnl 1.2.4 neither bounds-checks copies nor survives a width
// mismatch (it calls exit()), so everything is checked before it sees it.
std::string CheckAttr(const AttrSpec& spec, const uint8_t* data, uint32_t len);

}  // namespace knft
