// dump(family, table) and generation(): read-only requests, answered off the
// JS thread.
#include <sys/socket.h>

#include <cerrno>
#include <ctime>
#include <optional>
#include <vector>

#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <libnftnl/common.h>
#include <libnftnl/gen.h>

#include "attrs.h"
#include "netlink.h"

namespace knft {
namespace {

// A dump whose generation changed underneath is retried this many times.
constexpr int kDumpAttempts = 5;

template <typename F>
int Trampoline(const nlmsghdr* nlh, void* data) {
  return (*static_cast<F*>(data))(nlh);
}

// A socket plus the state of one conversation with the kernel.
class Conversation {
 public:
  Conversation() : nl_(OpenSocket()), rx_(MNL_SOCKET_BUFFER_SIZE * 32), seq_(time(nullptr)) {}

  // Builds a request with `build(nlh)`, sends it and passes every answer to
  // `onMessage` (returning MNL_CB_OK or MNL_CB_ERROR) until NLMSG_DONE (dumps)
  // or the ack (plain requests, which therefore carry NLM_F_ACK).
  // Returns 0 or an errno; EINTR means the dump was interrupted by a
  // concurrent ruleset change.
  template <typename Build, typename F>
  int Talk(uint16_t type, uint16_t family, uint16_t flags, Build build, F onMessage) {
    char req[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(req, type, family, flags, ++seq_);
    build(nlh);
    if (mnl_socket_sendto(nl_.get(), nlh, nlh->nlmsg_len) < 0) return errno;
    uint32_t port = mnl_socket_get_portid(nl_.get());
    for (;;) {
      ssize_t n = mnl_socket_recvfrom(nl_.get(), rx_.data(), rx_.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      failed_ = 0;
      int ret = mnl_cb_run(rx_.data(), n, seq_, port, &Trampoline<F>, &onMessage);
      if (ret < 0) return failed_ ? failed_ : errno;
      if (ret == MNL_CB_STOP) return 0;
    }
  }

  // For callbacks: report a parse failure and stop.
  int Fail() {
    failed_ = EPROTO;
    return MNL_CB_ERROR;
  }

 private:
  SocketPtr nl_;
  std::vector<char> rx_;
  uint32_t seq_;
  int failed_ = 0;
};

uint32_t GetGeneration(Conversation& c) {
  uint32_t gen = 0;
  int err = c.Talk(
      NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, [](nlmsghdr*) {},
      [&](const nlmsghdr* nlh) {
        std::unique_ptr<nftnl_gen, void (*)(const nftnl_gen*)> g(nftnl_gen_alloc(), nftnl_gen_free);
        if (!g || nftnl_gen_nlmsg_parse(nlh, g.get()) < 0) return c.Fail();
        gen = nftnl_gen_get_u32(g.get(), NFTNL_GEN_ID);
        return MNL_CB_OK;
      });
  if (err) throw SysError{err, "reading the ruleset generation failed: " + ErrnoText(err)};
  return gen;
}

using Bytes = std::vector<uint8_t>;

struct ElemInfo {
  Bytes key;
  std::optional<Bytes> data;
  std::optional<int32_t> verdict;
  std::optional<std::string> chain;
  std::optional<uint64_t> timeout, expiration;
  std::optional<uint32_t> flags;
};

struct SetInfo {
  std::string name;
  uint64_t handle = 0;
  uint32_t flags = 0, keyType = 0, keyLen = 0;
  std::optional<uint32_t> dataType, dataLen;
  std::optional<uint64_t> timeout;
  std::vector<ElemInfo> elements;
};

struct ChainInfo {
  std::string name;
  uint64_t handle = 0;
  std::optional<uint32_t> hooknum, policy;
  std::optional<int32_t> prio;
  std::optional<std::string> type;
};

// One attribute of an expression, as the attribute table (attrs.cc) types it.
struct ExprAttr {
  const AttrSpec* spec;
  uint64_t number = 0;
  std::string text;
  Bytes bytes;
};

struct ExprInfo {
  std::string name;
  std::vector<ExprAttr> attrs;
};

struct RuleInfo {
  std::string chain;
  uint64_t handle = 0;
  std::vector<ExprInfo> exprs;
  std::string text;
};

// Every attribute of `e` that the attribute table knows, so readers can evaluate the rule; an
// expression the table does not list keeps only its name.
ExprInfo DescribeExpr(nftnl_expr* e) {
  ExprInfo info;
  info.name = Str(nftnl_expr_get_str(e, NFTNL_EXPR_NAME));
  const AttrIndex* index = ExprAttrs(info.name);
  if (!index) return info;
  for (const AttrSpec* spec : index->byId) {
    if (!spec || !nftnl_expr_is_set(e, spec->id)) continue;
    ExprAttr attr{spec};
    switch (spec->type) {
      case AttrType::U8: attr.number = nftnl_expr_get_u8(e, spec->id); break;
      case AttrType::U32: attr.number = nftnl_expr_get_u32(e, spec->id); break;
      case AttrType::U64: attr.number = nftnl_expr_get_u64(e, spec->id); break;
      case AttrType::Str: attr.text = Str(nftnl_expr_get_str(e, spec->id)); break;
      case AttrType::Bytes:
      case AttrType::Data: {
        uint32_t len = 0;
        auto* p = static_cast<const uint8_t*>(nftnl_expr_get(e, spec->id, &len));
        if (p) attr.bytes.assign(p, p + len);
        break;
      }
    }
    info.attrs.push_back(std::move(attr));
  }
  return info;
}

struct DumpInfo {
  bool found = false;
  std::string name;
  uint32_t flags = 0;
  uint64_t handle = 0;
  std::vector<ChainInfo> chains;
  std::vector<SetInfo> sets;
  std::vector<RuleInfo> rules;
};

std::string RuleText(nftnl_rule* r) {
  std::vector<char> buf(4096);
  for (;;) {
    int n = nftnl_rule_snprintf(buf.data(), buf.size(), r, NFTNL_OUTPUT_DEFAULT, 0);
    if (n < 0) return "";
    if (static_cast<size_t>(n) < buf.size() - 1) return std::string(buf.data(), n);
    buf.resize(buf.size() * 4);  // possibly truncated: retry larger
  }
}

void Require(int err, const std::string& what) {
  if (err) throw SysError{err, what + " failed: " + ErrnoText(err)};
}

// One attempt; returns EINTR when the ruleset changed while reading.
int DumpOnce(uint16_t family, const std::string& table, DumpInfo& out) {
  Conversation c;
  uint32_t genBefore = GetGeneration(c);
  const char* tname = table.c_str();

  int err = c.Talk(
      NFT_MSG_GETTABLE, family, NLM_F_ACK,
      [&](nlmsghdr* nlh) {
        TablePtr t(Check(nftnl_table_alloc()));
        nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, tname);
        nftnl_table_nlmsg_build_payload(nlh, t.get());
      },
      [&](const nlmsghdr* nlh) {
        TablePtr t(nftnl_table_alloc());
        if (!t || nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return c.Fail();
        out.found = true;
        out.name = Str(nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME));
        out.flags = nftnl_table_get_u32(t.get(), NFTNL_TABLE_FLAGS);
        out.handle = nftnl_table_get_u64(t.get(), NFTNL_TABLE_HANDLE);
        return MNL_CB_OK;
      });
  if (err == ENOENT) return 0;
  if (err == EINTR) return err;
  Require(err, "GETTABLE");

  // The kernel filters chain, set and rule dumps by the table attribute of
  // the request; the name check below only guards against kernels that
  // do not.
  auto sameTable = [&](const char* t) { return t && table == t; };

  err = c.Talk(
      NFT_MSG_GETCHAIN, family, NLM_F_DUMP,
      [&](nlmsghdr* nlh) {
        ChainPtr ch(Check(nftnl_chain_alloc()));
        nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, tname);
        nftnl_chain_nlmsg_build_payload(nlh, ch.get());
      },
      [&](const nlmsghdr* nlh) {
        ChainPtr ch(nftnl_chain_alloc());
        if (!ch || nftnl_chain_nlmsg_parse(nlh, ch.get()) < 0) return c.Fail();
        nftnl_chain* p = ch.get();
        if (!sameTable(nftnl_chain_get_str(p, NFTNL_CHAIN_TABLE))) return MNL_CB_OK;
        ChainInfo info;
        info.name = Str(nftnl_chain_get_str(p, NFTNL_CHAIN_NAME));
        info.handle = nftnl_chain_get_u64(p, NFTNL_CHAIN_HANDLE);
        if (nftnl_chain_is_set(p, NFTNL_CHAIN_HOOKNUM)) info.hooknum = nftnl_chain_get_u32(p, NFTNL_CHAIN_HOOKNUM);
        if (nftnl_chain_is_set(p, NFTNL_CHAIN_PRIO)) info.prio = nftnl_chain_get_s32(p, NFTNL_CHAIN_PRIO);
        if (nftnl_chain_is_set(p, NFTNL_CHAIN_POLICY)) info.policy = nftnl_chain_get_u32(p, NFTNL_CHAIN_POLICY);
        if (nftnl_chain_is_set(p, NFTNL_CHAIN_TYPE)) info.type = Str(nftnl_chain_get_str(p, NFTNL_CHAIN_TYPE));
        out.chains.push_back(std::move(info));
        return MNL_CB_OK;
      });
  if (err == EINTR) return err;
  Require(err, "GETCHAIN");

  err = c.Talk(
      NFT_MSG_GETSET, family, NLM_F_DUMP,
      [&](nlmsghdr* nlh) {
        SetPtr s(Check(nftnl_set_alloc()));
        nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, tname);
        nftnl_set_nlmsg_build_payload(nlh, s.get());
      },
      [&](const nlmsghdr* nlh) {
        SetPtr s(nftnl_set_alloc());
        if (!s || nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return c.Fail();
        nftnl_set* p = s.get();
        if (!sameTable(nftnl_set_get_str(p, NFTNL_SET_TABLE))) return MNL_CB_OK;
        SetInfo info;
        info.name = Str(nftnl_set_get_str(p, NFTNL_SET_NAME));
        info.handle = nftnl_set_get_u64(p, NFTNL_SET_HANDLE);
        info.flags = nftnl_set_get_u32(p, NFTNL_SET_FLAGS);
        info.keyType = nftnl_set_get_u32(p, NFTNL_SET_KEY_TYPE);
        info.keyLen = nftnl_set_get_u32(p, NFTNL_SET_KEY_LEN);
        if (nftnl_set_is_set(p, NFTNL_SET_DATA_TYPE)) info.dataType = nftnl_set_get_u32(p, NFTNL_SET_DATA_TYPE);
        if (nftnl_set_is_set(p, NFTNL_SET_DATA_LEN)) info.dataLen = nftnl_set_get_u32(p, NFTNL_SET_DATA_LEN);
        if (nftnl_set_is_set(p, NFTNL_SET_TIMEOUT)) info.timeout = nftnl_set_get_u64(p, NFTNL_SET_TIMEOUT);
        out.sets.push_back(std::move(info));
        return MNL_CB_OK;
      });
  if (err == EINTR) return err;
  Require(err, "GETSET");

  for (SetInfo& set : out.sets) {
    err = c.Talk(
        NFT_MSG_GETSETELEM, family, NLM_F_DUMP,
        [&](nlmsghdr* nlh) {
          SetPtr s(Check(nftnl_set_alloc()));
          nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, tname);
          nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
          nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
        },
        [&](const nlmsghdr* nlh) {
          SetPtr s(nftnl_set_alloc());
          if (!s || nftnl_set_elems_nlmsg_parse(nlh, s.get()) < 0) return c.Fail();
          nftnl_set_elem_foreach(
              s.get(),
              [](nftnl_set_elem* e, void* data) {
                ElemInfo info;
                uint32_t len = 0;
                auto bytes = [&](uint16_t attr) {
                  auto* p = static_cast<const uint8_t*>(nftnl_set_elem_get(e, attr, &len));
                  return Bytes(p, p + len);
                };
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_KEY)) info.key = bytes(NFTNL_SET_ELEM_KEY);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_DATA)) info.data = bytes(NFTNL_SET_ELEM_DATA);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_VERDICT))
                  info.verdict = static_cast<int32_t>(nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_VERDICT));
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN))
                  info.chain = Str(nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN));
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_TIMEOUT))
                  info.timeout = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_TIMEOUT);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION))
                  info.expiration = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
                if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS))
                  info.flags = nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS);
                static_cast<std::vector<ElemInfo>*>(data)->push_back(std::move(info));
                return 0;
              },
              &set.elements);
          return MNL_CB_OK;
        });
    if (err == EINTR || err == ENOENT) return EINTR;  // set vanished: changed underneath
    Require(err, "GETSETELEM " + set.name);
  }

  err = c.Talk(
      NFT_MSG_GETRULE, family, NLM_F_DUMP,
      [&](nlmsghdr* nlh) {
        RulePtr r(Check(nftnl_rule_alloc()));
        nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, tname);
        nftnl_rule_nlmsg_build_payload(nlh, r.get());
      },
      [&](const nlmsghdr* nlh) {
        RulePtr r(nftnl_rule_alloc());
        if (!r || nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return c.Fail();
        nftnl_rule* p = r.get();
        if (!sameTable(nftnl_rule_get_str(p, NFTNL_RULE_TABLE))) return MNL_CB_OK;
        RuleInfo info;
        info.chain = Str(nftnl_rule_get_str(p, NFTNL_RULE_CHAIN));
        info.handle = nftnl_rule_get_u64(p, NFTNL_RULE_HANDLE);
        nftnl_expr_foreach(
            p,
            [](nftnl_expr* e, void* data) {
              static_cast<std::vector<ExprInfo>*>(data)->push_back(DescribeExpr(e));
              return 0;
            },
            &info.exprs);
        info.text = RuleText(p);
        out.rules.push_back(std::move(info));
        return MNL_CB_OK;
      });
  if (err == EINTR) return err;
  Require(err, "GETRULE");

  return GetGeneration(c) == genBefore ? 0 : EINTR;
}

// Resolves a promise with Result() or rejects with the SysError thrown by
// Work(); both run as a libuv work item.
class Worker : public Napi::AsyncWorker {
 public:
  explicit Worker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Start() {
    Napi::Promise p = deferred_.Promise();
    Queue();
    return p;
  }

 protected:
  virtual void Work() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Execute() override {
    try {
      Work();
    } catch (const SysError& e) {
      error_ = e;
    } catch (const std::bad_alloc&) {
      error_ = SysError{ENOMEM, "out of memory"};
    }
  }
  void OnOK() override {
    if (error_.err || !error_.message.empty())
      deferred_.Reject(MakeError(Env(), error_.message, error_.err).Value());
    else
      deferred_.Resolve(Result(Env()));
  }

 private:
  Napi::Promise::Deferred deferred_;
  SysError error_{0, ""};
};

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const Bytes& b) {
  return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size());
}

class DumpWorker : public Worker {
 public:
  DumpWorker(Napi::Env env, uint16_t family, std::string table)
      : Worker(env), family_(family), table_(std::move(table)) {}

 protected:
  void Work() override {
    for (int attempt = 0; attempt < kDumpAttempts; attempt++) {
      out_ = DumpInfo();
      if (DumpOnce(family_, table_, out_) == 0) return;
    }
    throw SysError{EAGAIN, "dump of table " + table_ + " kept being interrupted by ruleset changes"};
  }

  Napi::Value Result(Napi::Env env) override {
    if (!out_.found) return env.Null();
    auto num = [&](double v) { return Napi::Number::New(env, v); };
    Napi::Object result = Napi::Object::New(env);

    Napi::Object table = Napi::Object::New(env);
    table.Set("name", out_.name);
    table.Set("flags", num(out_.flags));
    table.Set("handle", num(static_cast<double>(out_.handle)));
    result.Set("table", table);

    Napi::Array chains = Napi::Array::New(env, out_.chains.size());
    for (size_t i = 0; i < out_.chains.size(); i++) {
      const ChainInfo& c = out_.chains[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", c.name);
      o.Set("handle", num(static_cast<double>(c.handle)));
      if (c.hooknum) o.Set("hooknum", num(*c.hooknum));
      if (c.prio) o.Set("prio", num(*c.prio));
      if (c.policy) o.Set("policy", num(*c.policy));
      if (c.type) o.Set("type", *c.type);
      chains.Set(i, o);
    }
    result.Set("chains", chains);

    Napi::Array sets = Napi::Array::New(env, out_.sets.size());
    for (size_t i = 0; i < out_.sets.size(); i++) {
      const SetInfo& s = out_.sets[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("handle", num(static_cast<double>(s.handle)));
      o.Set("flags", num(s.flags));
      o.Set("keyType", num(s.keyType));
      o.Set("keyLen", num(s.keyLen));
      if (s.dataType) o.Set("dataType", num(*s.dataType));
      if (s.dataLen) o.Set("dataLen", num(*s.dataLen));
      if (s.timeout) o.Set("timeout", num(static_cast<double>(*s.timeout)));
      Napi::Array elems = Napi::Array::New(env, s.elements.size());
      for (size_t j = 0; j < s.elements.size(); j++) {
        const ElemInfo& e = s.elements[j];
        Napi::Object eo = Napi::Object::New(env);
        eo.Set("key", ToBuffer(env, e.key));
        if (e.data) eo.Set("data", ToBuffer(env, *e.data));
        if (e.verdict) eo.Set("verdict", num(*e.verdict));
        if (e.chain) eo.Set("chain", *e.chain);
        if (e.timeout) eo.Set("timeout", num(static_cast<double>(*e.timeout)));
        if (e.expiration) eo.Set("expiration", num(static_cast<double>(*e.expiration)));
        if (e.flags) eo.Set("flags", num(*e.flags));
        elems.Set(j, eo);
      }
      o.Set("elements", elems);
      sets.Set(i, o);
    }
    result.Set("sets", sets);

    Napi::Array rules = Napi::Array::New(env, out_.rules.size());
    for (size_t i = 0; i < out_.rules.size(); i++) {
      const RuleInfo& r = out_.rules[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("chain", r.chain);
      o.Set("handle", num(static_cast<double>(r.handle)));
      Napi::Array exprs = Napi::Array::New(env, r.exprs.size());
      Napi::Array expressions = Napi::Array::New(env, r.exprs.size());
      for (size_t j = 0; j < r.exprs.size(); j++) {
        const ExprInfo& e = r.exprs[j];
        exprs.Set(j, e.name);
        Napi::Object attrs = Napi::Object::New(env);
        for (const ExprAttr& a : e.attrs) {
          switch (a.spec->type) {
            case AttrType::Str: attrs.Set(a.spec->name, a.text); break;
            case AttrType::Bytes:
            case AttrType::Data: attrs.Set(a.spec->name, ToBuffer(env, a.bytes)); break;
            default: attrs.Set(a.spec->name, num(static_cast<double>(a.number)));
          }
        }
        Napi::Object expression = Napi::Object::New(env);
        expression.Set("name", e.name);
        expression.Set("attrs", attrs);
        expressions.Set(j, expression);
      }
      o.Set("exprs", exprs);
      o.Set("expressions", expressions);
      o.Set("text", r.text);
      rules.Set(i, o);
    }
    result.Set("rules", rules);
    return result;
  }

 private:
  uint16_t family_;
  std::string table_;
  DumpInfo out_;
};

struct TableName {
  uint32_t family;
  std::string name;
};

// Every table in the namespace, anyone's: one small dump, so a replace deletes only the
// tables that exist (see NftablesBackend.replace for why that matters).
class TablesWorker : public Worker {
 public:
  using Worker::Worker;

 protected:
  void Work() override {
    Conversation c;
    int err = c.Talk(
        NFT_MSG_GETTABLE, AF_UNSPEC, NLM_F_DUMP, [](nlmsghdr*) {},
        [&](const nlmsghdr* nlh) {
          std::unique_ptr<nftnl_table, void (*)(const nftnl_table*)> t(nftnl_table_alloc(), nftnl_table_free);
          if (!t || nftnl_table_nlmsg_parse(nlh, t.get()) < 0) return c.Fail();
          tables_.push_back({nftnl_table_get_u32(t.get(), NFTNL_TABLE_FAMILY),
                             nftnl_table_get_str(t.get(), NFTNL_TABLE_NAME)});
          return MNL_CB_OK;
        });
    Require(err, "GETTABLE");
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array result = Napi::Array::New(env, tables_.size());
    for (size_t i = 0; i < tables_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("family", Napi::Number::New(env, tables_[i].family));
      o.Set("name", tables_[i].name);
      result.Set(i, o);
    }
    return result;
  }

 private:
  std::vector<TableName> tables_;
};

class GenerationWorker : public Worker {
 public:
  using Worker::Worker;

 protected:
  void Work() override {
    Conversation c;
    gen_ = GetGeneration(c);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, gen_); }

 private:
  uint32_t gen_ = 0;
};

}  // namespace

Napi::Value Dump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString())
    throw Napi::TypeError::New(env, "dump(family: number, table: string)");
  uint32_t family = info[0].As<Napi::Number>().Uint32Value();
  std::string table = info[1].As<Napi::String>().Utf8Value();
  if (family > 0xff) throw Napi::RangeError::New(env, "dump: family out of range");
  if (table.empty() || table.find('\0') != std::string::npos)
    throw Napi::TypeError::New(env, "dump: invalid table name");
  return (new DumpWorker(env, family, std::move(table)))->Start();
}

Napi::Value Tables(const Napi::CallbackInfo& info) {
  return (new TablesWorker(info.Env()))->Start();
}

Napi::Value Generation(const Napi::CallbackInfo& info) {
  return (new GenerationWorker(info.Env()))->Start();
}

}  // namespace knft
