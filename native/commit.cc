// commit(transaction): decode the binary transaction written by TypeScript
// into libnftnl objects, encode them as one nfnetlink batch, send it, and
// collect the kernel's verdict for every message.
#include <arpa/inet.h>
#include <endian.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <libnftnl/common.h>

#include "attrs.h"
#include "netlink.h"

namespace knft {
namespace {

enum MessageKind : uint8_t { kTable = 0, kChain, kRule, kSet, kSetElems };

// The largest element accepted: keeps one element far below the 64 KiB
// nest limit at which libnftnl starts a new setelem message (an element
// larger than that would never fit and make the iterator spin).
constexpr size_t kMaxElementBytes = 8192;
// libnftnl closes a setelem message once its element nest exceeds 64 KiB,
// after having written the element that crossed the limit.
constexpr size_t kElemNestLimit = 65536;
constexpr size_t kRecvBufferBytes = 8 << 20;

struct DecodeError {
  std::string message;
};

// Bounds-checked little-endian reader over the transaction buffer.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}

  const uint8_t* Take(size_t n, const char* what) {
    if (static_cast<size_t>(end_ - p_) < n) throw DecodeError{std::string("truncated ") + what};
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint8_t U8(const char* what) { return *Take(1, what); }
  uint16_t U16(const char* what) {
    uint16_t v;
    memcpy(&v, Take(2, what), 2);
    return le16toh(v);
  }
  uint32_t U32(const char* what) {
    uint32_t v;
    memcpy(&v, Take(4, what), 4);
    return le32toh(v);
  }
  const uint8_t* Pos() const { return p_; }
  size_t Remaining() const { return end_ - p_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Reads `u32 count, attr[count]` and hands each validated attribute to `set`
// (a libnftnl setter returning < 0 on failure). The attributes belong to
// `kind` (and `name`, for an expression); the two make up error messages
// only, so that decoding millions of attributes builds no strings.
template <typename Setter>
void ReadAttrs(Reader& r, const AttrIndex* index, const char* kind, std::string_view name, Setter set) {
  auto owner = [&] { return name.empty() ? std::string(kind) : std::string(kind) + " " + std::string(name); };
  uint32_t count = r.U32("attribute count");
  for (uint32_t i = 0; i < count; i++) {
    uint16_t id = r.U16("attribute id");
    uint16_t len = r.U16("attribute length");
    const uint8_t* data = r.Take(len, "attribute data");
    const AttrSpec* spec = index && id < 32 ? index->byId[id] : nullptr;
    if (!spec) throw DecodeError{"unsupported " + owner() + " attribute " + std::to_string(id)};
    std::string problem = CheckAttr(*spec, data, len);
    if (!problem.empty()) throw DecodeError{owner() + " " + problem};
    if (set(id, data, len) < 0) throw DecodeError{"libnftnl rejected " + owner() + " attribute " + spec->name};
  }
}

// The batch being built: one growable buffer plus, for every netlink message
// after BATCH_BEGIN, the transaction message it came from.
class Batch {
 public:
  // new char[] leaves the bytes uninitialised (std::vector would zero tens of
  // MB that libnftnl overwrites anyway): pages are touched only when written.
  explicit Batch(size_t hint) : buf_(new char[hint]), capacity_(hint) {}

  // libnftnl writes without bounds checks, so callers first reserve an upper
  // bound of what the next message can take.
  char* Reserve(size_t n) {
    if (capacity_ - len_ < n) {
      size_t capacity = std::max(capacity_ * 2, len_ + n);
      std::unique_ptr<char[]> grown(new char[capacity]);
      memcpy(grown.get(), buf_.get(), len_);
      buf_ = std::move(grown);
      capacity_ = capacity;
    }
    return buf_.get() + len_;
  }
  void Push(const nlmsghdr* nlh) {
    last_ = len_;
    len_ += NLMSG_ALIGN(nlh->nlmsg_len);
  }
  nlmsghdr* Last() { return reinterpret_cast<nlmsghdr*>(buf_.get() + last_); }
  const char* Data() const { return buf_.get(); }
  size_t Size() const { return len_; }

  uint32_t NextSeq(uint32_t owner) {
    owners_.push_back(owner);
    return seq0_ + static_cast<uint32_t>(owners_.size());
  }
  uint32_t BeginSeq() const { return seq0_; }
  uint32_t LastSeq() const { return seq0_ + static_cast<uint32_t>(owners_.size()); }
  size_t Messages() const { return owners_.size(); }
  // Transaction index for a sequence number; -1 for the batch itself or a
  // number that is not ours.
  int64_t OwnerOf(uint32_t seq) const {
    uint32_t k = seq - seq0_ - 1;  // unsigned: wraps like the sequence numbers
    return k < owners_.size() ? owners_[k] : -1;
  }

 private:
  std::unique_ptr<char[]> buf_;
  size_t capacity_;
  size_t len_ = 0;
  size_t last_ = 0;
  std::vector<uint32_t> owners_;
  uint32_t seq0_ = static_cast<uint32_t>(time(nullptr));
};

// Netlink encoding is never more than 4x the transaction encoding of the
// same data (attribute headers are the same size, nests and padding add at
// most 12 bytes per 4-byte transaction header), plus a constant for headers.
size_t Bound(size_t transactionBytes) { return 4 * transactionBytes + 256; }

void EncodeMessage(Reader& r, uint32_t index, Batch& b) {
  const uint8_t* start = r.Pos();
  uint8_t kind = r.U8("message kind");
  uint8_t family = r.U8("family");
  uint16_t type = r.U16("message type");
  uint16_t flags = r.U16("netlink flags");
  r.U16("reserved");
  if (type > 0xff) throw DecodeError{"message type " + std::to_string(type) + " out of range"};
  // The ACK flag is ours to place (see SendBatch).
  flags &= ~NLM_F_ACK;

  auto header = [&](size_t bound) {
    return nftnl_nlmsg_build_hdr(b.Reserve(bound), type, family, flags, b.NextSeq(index));
  };

  switch (kind) {
    case kTable: {
      TablePtr t(Check(nftnl_table_alloc()));
      ReadAttrs(r, &ObjectAttrs(Kind::Table), "table", {}, [&](uint16_t id, const void* d, uint32_t l) {
        return nftnl_table_set_data(t.get(), id, d, l);
      });
      nlmsghdr* nlh = header(Bound(r.Pos() - start));
      nftnl_table_nlmsg_build_payload(nlh, t.get());
      b.Push(nlh);
      break;
    }
    case kChain: {
      ChainPtr c(Check(nftnl_chain_alloc()));
      ReadAttrs(r, &ObjectAttrs(Kind::Chain), "chain", {}, [&](uint16_t id, const void* d, uint32_t l) {
        return nftnl_chain_set_data(c.get(), id, d, l);
      });
      nlmsghdr* nlh = header(Bound(r.Pos() - start));
      nftnl_chain_nlmsg_build_payload(nlh, c.get());
      b.Push(nlh);
      break;
    }
    case kRule: {
      RulePtr rule(Check(nftnl_rule_alloc()));
      ReadAttrs(r, &ObjectAttrs(Kind::Rule), "rule", {}, [&](uint16_t id, const void* d, uint32_t l) {
        return nftnl_rule_set_data(rule.get(), id, d, l);
      });
      uint32_t count = r.U32("expression count");
      for (uint32_t i = 0; i < count; i++) {
        uint8_t nameLen = r.U8("expression name length");
        // nftnl_expr_alloc wants a C string; the name's length fits a u8.
        char name[256];
        memcpy(name, r.Take(nameLen, "expression name"), nameLen);
        name[nameLen] = 0;
        ExprPtr e(nftnl_expr_alloc(name));
        if (!e) throw DecodeError{"unknown expression \"" + std::string(name) + "\""};
        std::string_view exprName(name, nameLen);  // a NUL inside the name makes it unknown
        ReadAttrs(r, ExprAttrs(exprName), "expression", exprName, [&](uint16_t id, const void* d, uint32_t l) {
          return nftnl_expr_set(e.get(), id, d, l);
        });
        nftnl_rule_add_expr(rule.get(), e.release());
      }
      nlmsghdr* nlh = header(Bound(r.Pos() - start));
      nftnl_rule_nlmsg_build_payload(nlh, rule.get());
      b.Push(nlh);
      break;
    }
    case kSet: {
      SetPtr s(Check(nftnl_set_alloc()));
      ReadAttrs(r, &ObjectAttrs(Kind::Set), "set", {}, [&](uint16_t id, const void* d, uint32_t l) {
        return nftnl_set_set_data(s.get(), id, d, l);
      });
      nlmsghdr* nlh = header(Bound(r.Pos() - start));
      nftnl_set_nlmsg_build_payload(nlh, s.get());
      b.Push(nlh);
      break;
    }
    case kSetElems: {
      SetPtr s(Check(nftnl_set_alloc()));
      ReadAttrs(r, &ObjectAttrs(Kind::Set), "set", {}, [&](uint16_t id, const void* d, uint32_t l) {
        return nftnl_set_set_data(s.get(), id, d, l);
      });
      size_t headerBytes = r.Pos() - start;
      size_t largest = 0;
      uint32_t count = r.U32("element count");
      for (uint32_t i = 0; i < count; i++) {
        const uint8_t* elemStart = r.Pos();
        ElemPtr e(Check(nftnl_set_elem_alloc()));
        ReadAttrs(r, &ObjectAttrs(Kind::Elem), "element", {}, [&](uint16_t id, const void* d, uint32_t l) {
          return nftnl_set_elem_set(e.get(), id, d, l);
        });
        size_t bytes = r.Pos() - elemStart;
        if (bytes > kMaxElementBytes) throw DecodeError{"element " + std::to_string(i) + " too large"};
        largest = std::max(largest, bytes);
        nftnl_set_elem_add(s.get(), e.release());
      }
      // One netlink message per ~64 KiB of elements, each repeating the
      // table/set attributes. An empty list still yields one message: a
      // DELSETELEM without elements flushes the set.
      IterPtr it(Check(nftnl_set_elems_iter_create(s.get())));
      size_t bound = Bound(headerBytes) + kElemNestLimit + Bound(largest);
      int more;
      do {
        nlmsghdr* nlh = header(bound);
        more = nftnl_set_elems_nlmsg_build_payload_iter(nlh, it.get());
        b.Push(nlh);
      } while (more > 0);
      break;
    }
    default:
      throw DecodeError{"unknown message kind " + std::to_string(kind)};
  }
}

struct Failure {
  int64_t index;  // transaction message index, -1 for the batch as a whole
  int err;
  std::string extack;
};

struct Outcome {
  size_t messages = 0;
  size_t bytes = 0;
  double encodeMs = 0;
  double kernelMs = 0;
  std::vector<Failure> failures;
  bool overrun = false;
  bool committed = false;  // a NEWGEN came back: the batch changed the ruleset
  uint32_t generation = 0;
};

std::string ExtackMessage(const nlmsghdr* nlh) {
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  // Without NLM_F_CAPPED the failing request is echoed before the TLVs.
  size_t offset = sizeof(*err);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  if (offset > mnl_nlmsg_get_payload_len(nlh)) return "";
  std::string msg;
  mnl_attr_parse(
      nlh, offset,
      [](const nlattr* a, void* data) {
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
          *static_cast<std::string*>(data) = mnl_attr_get_str(a);
        return MNL_CB_OK;
      },
      &msg);
  return msg;
}

void ReadGeneration(const nlmsghdr* nlh, Outcome& out) {
  mnl_attr_parse(
      nlh, sizeof(nfgenmsg),
      [](const nlattr* a, void* data) {
        if (mnl_attr_get_type(a) == NFTA_GEN_ID && mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
          auto* o = static_cast<Outcome*>(data);
          o->generation = ntohl(mnl_attr_get_u32(a));
          o->committed = true;
        }
        return MNL_CB_OK;
      },
      &out);
}

// Sends the batch and reads the answers.
//
// NLM_F_ACK is set only on the last message. nfnetlink processes the whole
// batch synchronously inside sendmsg() and queues an error for every failing
// message whether or not it asked for an ack, in message order, followed by
// the ack of the last message. Acking every message would queue one skb per
// message, which at 200k messages overflows any receive buffer and loses
// errors. Since everything is queued by the time sendmsg() returns, the
// answers are read without blocking: running dry before the last ack means
// the kernel refused the batch as a whole (e.g. EPERM on BATCH_BEGIN).
//
// The kernel echoes a commit's NEWGEN (and so its generation id) to this
// socket when the batch's first object message carries NLM_F_ECHO; that
// message's own notifications are echoed too and ignored here.
void SendBatch(const Batch& b, Outcome& out) {
  SocketPtr nl = OpenSocket();
  // sendmsg() fails with EMSGSIZE unless the whole batch fits the send buffer.
  SetBuffer(nl.get(), SO_SNDBUFFORCE, SO_SNDBUF, b.Size() + 65536);
  SetBuffer(nl.get(), SO_RCVBUFFORCE, SO_RCVBUF, kRecvBufferBytes);
  int one = 1;
  mnl_socket_setsockopt(nl.get(), NETLINK_EXT_ACK, &one, sizeof(one));
  // Errors would otherwise echo the failing message (up to 64 KiB each).
  mnl_socket_setsockopt(nl.get(), NETLINK_CAP_ACK, &one, sizeof(one));

  if (mnl_socket_sendto(nl.get(), b.Data(), b.Size()) < 0)
    throw SysError{errno, "sending batch of " + std::to_string(b.Size()) + " bytes failed: " + ErrnoText(errno)};

  int fd = mnl_socket_get_fd(nl.get());
  std::vector<char> rx(256 * 1024);
  // An empty batch expects no ack, but may still be refused as a whole.
  bool expectAck = b.Messages() > 0;
  bool lastSeen = false;
  while (!lastSeen) {
    ssize_t n = recv(fd, rx.data(), rx.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        out.overrun = true;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw SysError{errno, "reading kernel answers failed: " + ErrnoText(errno)};
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) {
        ReadGeneration(nlh, out);
        continue;
      }
      if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) continue;
      auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (e->error != 0) out.failures.push_back({b.OwnerOf(nlh->nlmsg_seq), -e->error, ExtackMessage(nlh)});
      if (nlh->nlmsg_seq == b.LastSeq()) lastSeen = true;
    }
  }
  if (expectAck && !lastSeen && out.failures.empty())
    throw SysError{out.overrun ? ENOBUFS : EPROTO, "no acknowledgement from the kernel for the batch"};
}

// Commits run one at a time and in the order they were asked for: a caller may send a table and,
// before that commit finishes, another transaction adding to it (the staged first load does).
// libuv's pool runs queued work on several threads and a mutex alone grants no order, so the
// later batch could reach the kernel first and be refused (ENOENT). A ticket, taken on the
// calling thread, fixes the order; each pool thread waits for its ticket's turn.
std::mutex commitMutex;
std::condition_variable commitTurn;
uint64_t nextTicket = 0;     // guarded by commitMutex
uint64_t servingTicket = 0;  // guarded by commitMutex

uint64_t TakeTicket() {
  std::lock_guard<std::mutex> guard(commitMutex);
  return nextTicket++;
}

/** Passes the turn on however the commit ended. */
class CommitTurn {
 public:
  CommitTurn(std::unique_lock<std::mutex>& lock) : lock_(lock) {}
  ~CommitTurn() {
    servingTicket++;
    lock_.unlock();
    commitTurn.notify_all();
  }

 private:
  std::unique_lock<std::mutex>& lock_;
};

// Capture: a copy of every batch sent, exactly as sent, for a replay by another program (the
// bench's kernel floor). Off unless asked for; guarded apart from commitMutex, which a commit
// holds for its whole run.
std::mutex captureMutex;
bool capturing = false;
std::vector<std::string> captured;

void Capture(const Batch& b) {
  std::lock_guard<std::mutex> guard(captureMutex);
  if (capturing) captured.emplace_back(b.Data(), b.Size());
}

class CommitWorker : public Napi::AsyncWorker {
 public:
  // The transaction is copied: the caller may reuse its buffer for the next transaction at once,
  // and a large one counts towards V8's external memory (whose growth triggers full GCs) only
  // as long as the caller keeps it.
  CommitWorker(Napi::Env env, Napi::Uint8Array tx)
      : Napi::AsyncWorker(env, "kubenft.commit"),
        deferred_(Napi::Promise::Deferred::New(env)),
        data_(new uint8_t[tx.ByteLength()]),
        len_(tx.ByteLength()) {
    memcpy(data_.get(), tx.Data(), len_);
    ticket_ = TakeTicket();
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::unique_lock<std::mutex> lock(commitMutex);
    commitTurn.wait(lock, [this] { return servingTicket == ticket_; });
    CommitTurn passOn(lock);
    try {
      Run();
    } catch (const DecodeError& e) {
      error_ = "malformed transaction" +
               (index_ >= 0 ? " at message " + std::to_string(index_) : std::string()) + ": " + e.message;
    } catch (const SysError& e) {
      index_ = -1;
      error_ = e.message;
      errno_ = e.err;
    } catch (const std::bad_alloc&) {
      index_ = -1;
      error_ = "out of memory while encoding the batch";
      errno_ = ENOMEM;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!error_.empty()) {
      Napi::Error err = MakeError(env, error_, errno_);
      if (index_ >= 0) err.Set("index", Napi::Number::New(env, index_));
      deferred_.Reject(err.Value());
    } else if (!out_.failures.empty()) {
      deferred_.Reject(FailureError(env).Value());
    } else {
      Napi::Object result = Napi::Object::New(env);
      result.Set("messages", Napi::Number::New(env, out_.messages));
      result.Set("bytes", Napi::Number::New(env, out_.bytes));
      result.Set("encodeMs", Napi::Number::New(env, out_.encodeMs));
      result.Set("kernelMs", Napi::Number::New(env, out_.kernelMs));
      if (out_.committed) result.Set("generation", Napi::Number::New(env, out_.generation));
      deferred_.Resolve(result);
    }
  }

 private:
  void Run() {
    auto t0 = std::chrono::steady_clock::now();
    Reader r(data_.get(), len_);
    uint32_t count = r.U32("message count");
    Batch b(std::max<size_t>(len_ * 2, 4096) + 65536);
    b.Push(nftnl_batch_begin(b.Reserve(256), b.BeginSeq()));
    for (uint32_t i = 0; i < count; i++) {
      index_ = i;
      EncodeMessage(r, i, b);
    }
    index_ = -1;
    if (r.Remaining() != 0) throw DecodeError{std::to_string(r.Remaining()) + " trailing bytes"};
    if (b.Messages() > 0) b.Last()->nlmsg_flags |= NLM_F_ACK;
    b.Push(nftnl_batch_end(b.Reserve(256), b.LastSeq() + 1));
    out_.messages = b.Messages() + 2;
    out_.bytes = b.Size();
    out_.encodeMs = MsSince(t0);

    Capture(b);
    auto t1 = std::chrono::steady_clock::now();
    SendBatch(b, out_);
    out_.kernelMs = MsSince(t1);
  }

  // One entry per failing transaction message (a setelems message split in
  // several netlink messages reports its first error only), in batch order.
  Napi::Error FailureError(Napi::Env env) {
    Napi::Array list = Napi::Array::New(env);
    std::unordered_set<int64_t> seen;
    for (const Failure& f : out_.failures) {
      if (!seen.insert(f.index).second) continue;
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", Napi::Number::New(env, static_cast<double>(f.index)));
      o.Set("errno", Napi::Number::New(env, f.err));
      o.Set("code", Napi::String::New(env, ErrnoName(f.err)));
      o.Set("message", Napi::String::New(env, f.extack.empty() ? ErrnoText(f.err) : f.extack));
      list.Set(list.Length(), o);
    }
    const Failure& first = out_.failures.front();
    std::string msg = first.index >= 0 ? "kernel rejected message " + std::to_string(first.index)
                                       : std::string("kernel rejected the batch");
    msg += ": " + ErrnoText(first.err);
    if (!first.extack.empty()) msg += " (" + first.extack + ")";
    if (list.Length() > 1) msg += "; " + std::to_string(list.Length() - 1) + " more message(s) failed";
    if (out_.overrun) msg += " (receive buffer overrun: some errors were lost)";
    Napi::Error err = MakeError(env, msg, first.err);
    if (first.index >= 0) err.Set("index", Napi::Number::New(env, static_cast<double>(first.index)));
    err.Set("failures", list);
    return err;
  }

  Napi::Promise::Deferred deferred_;
  std::unique_ptr<uint8_t[]> data_;
  size_t len_;
  uint64_t ticket_ = 0;
  int64_t index_ = -1;
  std::string error_;
  int errno_ = 0;
  Outcome out_;
};

}  // namespace

Napi::Value CaptureBatches(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> guard(captureMutex);
  capturing = info.Length() > 0 && info[0].ToBoolean();
  return info.Env().Undefined();
}

Napi::Value TakeCapturedBatches(const Napi::CallbackInfo& info) {
  std::vector<std::string> batches;
  {
    std::lock_guard<std::mutex> guard(captureMutex);
    batches.swap(captured);
  }
  Napi::Array list = Napi::Array::New(info.Env(), batches.size());
  for (size_t i = 0; i < batches.size(); i++)
    list.Set(i, Napi::Buffer<char>::Copy(info.Env(), batches[i].data(), batches[i].size()));
  return list;
}

Napi::Value Commit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "commit(transaction): transaction must be a Buffer or Uint8Array");
  auto* worker = new CommitWorker(env, info[0].As<Napi::Uint8Array>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace knft
