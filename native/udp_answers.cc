// udpAnswers(options, onMiss): a UDP socket (or several, SO_REUSEPORT) served by
// native threads with recvmmsg/sendmmsg, answering DNS queries from a table of
// prepared answers that JS fills. Generic DNS only: the table says what to
// answer, this file only matches questions and patches responses.
//
// A query is matched on its lower-cased question (wire form), type and class:
//   exact   (name, type, class) -> a prepared response: the ID, the RD bit and
//           the question's case (at every offset JS lists) are patched in;
//   name    (name, class)       -> a response with no answer (rcode, flags and an
//           authority section from a slot), or "pass";
//   suffix  (name or any name below it, class; the longest suffix wins) -> the same.
// EDNS0 adds an OPT record; a response larger than the client's UDP size is sent
// as the question with TC set. Everything else (no match, "pass", anything
// malformed or unusual) goes to onMiss(packet, address, port), whose answer
// JS sends back through send(). A full miss queue drops the packet: nothing a
// client sends can grow memory without bound.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "netlink.h"

namespace knft {
namespace {

constexpr size_t kHeader = 12;
constexpr int kBatch = 64;
// Queries larger than this are dropped; responses never exceed the EDNS size kept below.
constexpr size_t kInSlot = 4096;
constexpr size_t kOutSlot = 2048;
constexpr size_t kMissQueue = 1024;
constexpr int kReceiveBuffer = 4 << 20;
constexpr uint16_t kClassicUdpSize = 512;
constexpr uint16_t kEdnsUdpSize = 1232;
constexpr uint16_t kTypeOpt = 41;
constexpr uint8_t kFlagQr = 0x80, kFlagTc = 0x02, kFlagRd = 0x01;
constexpr uint8_t kOpt[11] = {0, 0, kTypeOpt, kEdnsUdpSize >> 8, kEdnsUdpSize & 0xff, 0, 0, 0, 0, 0, 0};
constexpr uint8_t kNoAuthority = 255;

enum Mode : uint8_t { kExact = 0, kName = 1, kSuffix = 2 };
enum Op : uint8_t { kRemove = 0, kSetAnswer = 1, kSetTemplate = 2, kSetAuthority = 3, kClear = 4 };

struct Entry {
  // kExact: the response, and where the question's name recurs in it.
  std::string packet;
  std::vector<uint16_t> nameAt;
  // Where the zone ends other names (SRV targets, glue): they get the query's case for it.
  std::vector<uint16_t> zoneAt;
  uint8_t zoneLength = 0;
  // kName, kSuffix: pass to JS, or answer with these header flags and authority.
  bool pass = false;
  uint16_t flags = 0;
  uint8_t authority = kNoAuthority;
};

struct Authority {
  uint16_t count = 0;
  std::string records;
};

// Shards, so that an update copies only the shards it touches: copying a whole table of 100k
// entries took ~65 ms per sync at 10k services.
constexpr size_t kShards = 256;
using Shard = std::unordered_map<std::string, Entry>;

struct Table {
  std::array<std::shared_ptr<const Shard>, kShards> shards;
  std::vector<Authority> authorities;

  Table() { shards.fill(std::make_shared<const Shard>()); }

  static size_t ShardOf(const std::string& key) { return std::hash<std::string>{}(key) % kShards; }

  const Entry* Find(const std::string& key) const {
    const Shard& shard = *shards[ShardOf(key)];
    auto found = shard.find(key);
    return found == shard.end() ? nullptr : &found->second;
  }
};

// mode, type, class, then the lower-cased wire name.
void MakeKey(std::string& key, uint8_t mode, uint16_t type, uint16_t klass, const uint8_t* name, size_t length) {
  key.resize(5 + length);
  key[0] = static_cast<char>(mode);
  key[1] = static_cast<char>(type >> 8);
  key[2] = static_cast<char>(type & 0xff);
  key[3] = static_cast<char>(klass >> 8);
  key[4] = static_cast<char>(klass & 0xff);
  std::memcpy(&key[5], name, length);
}

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void Put16(uint8_t* p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

// The parsed question of a query this file may answer.
struct Question {
  size_t nameEnd = 0;      // offset after the name's root label
  size_t questionEnd = 0;  // after type and class
  uint16_t type = 0, klass = 0;
  uint16_t ednsSize = 0;   // 0: no EDNS
  uint8_t lower[256];      // the name in wire form, lower-cased
  size_t labelAt[128];     // offsets of the labels in `lower`
  size_t labels = 0;
};

enum class Parsed { kQuestion, kDrop, kPass };

Parsed ParseQuestion(const uint8_t* p, size_t n, Question& q) {
  q.labels = 0;
  q.ednsSize = 0;
  if (n < kHeader) return Parsed::kPass;
  if (p[2] & kFlagQr) return Parsed::kDrop;  // a response: JS drops them too
  if ((p[2] & 0x78) != 0 || Get16(p + 4) != 1) return Parsed::kPass;  // not a plain QUERY with one question
  size_t at = kHeader, out = 0;
  for (;;) {
    if (at >= n) return Parsed::kPass;
    uint8_t length = p[at];
    if (length == 0) break;
    if (length > 63 || at + 1 + length > n || out + 1 + length > 254 || q.labels == 127) return Parsed::kPass;
    q.labelAt[q.labels++] = out;
    q.lower[out++] = length;
    for (size_t i = 1; i <= length; i++) {
      uint8_t c = p[at + i];
      q.lower[out++] = (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c;
    }
    at += 1 + length;
  }
  q.lower[out++] = 0;
  q.labelAt[q.labels] = out - 1;  // the root label: the zone "." itself
  q.nameEnd = at + 1;
  if (q.nameEnd + 4 > n) return Parsed::kPass;
  q.type = Get16(p + q.nameEnd);
  q.klass = Get16(p + q.nameEnd + 2);
  q.questionEnd = q.nameEnd + 4;
  // Meta types (AXFR, IXFR, ANY, ...) are JS's to refuse or answer.
  if (q.type >= 128 && q.type <= 255) return Parsed::kPass;
  if (Get16(p + 10) > 0 && Get16(p + 6) == 0 && Get16(p + 8) == 0) {
    size_t opt = q.questionEnd;
    if (opt + 11 <= n && p[opt] == 0 && Get16(p + opt + 1) == kTypeOpt) {
      uint16_t size = Get16(p + opt + 3);
      q.ednsSize = size < kClassicUdpSize ? kClassicUdpSize : size > kEdnsUdpSize ? kEdnsUdpSize : size;
    }
  }
  return Parsed::kQuestion;
}

struct Counters {
  std::atomic<uint64_t> requests[257] = {};  // by type; [256]: types above 255
  std::atomic<uint64_t> responses[16] = {};  // by rcode
  std::vector<std::atomic<uint64_t>> durations;  // per bucket bound
  std::atomic<uint64_t> durationNs{0};
  std::atomic<uint64_t> dropped{0};
  explicit Counters(size_t buckets) : durations(buckets) {}
};

class Server {
 public:
  Server(Napi::Env env, const std::string& address, uint16_t port, int threads, std::vector<double> bounds, Napi::Function onMiss)
      : bounds_(std::move(bounds)), counters_(bounds_.size()), table_(std::make_shared<Table>()) {
    sockaddr_storage local{};
    socklen_t localLength = Resolve(address, port, local);
    if (!localLength) throw SysError{EINVAL, address + " is not an IP address"};
    family_ = local.ss_family;
    stopFd_ = eventfd(0, EFD_CLOEXEC);
    if (stopFd_ < 0) throw SysError{errno, "eventfd: " + ErrnoText(errno)};
    for (int i = 0; i < threads; i++) {
      int fd = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) Fail(errno, "socket");
      fds_.push_back(fd);
      int one = 1;
      if (threads > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) Fail(errno, "SO_REUSEPORT");
      if (family_ == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) Fail(errno, "IPV6_V6ONLY");
      // A burst arriving while the thread is off its core waits here instead of being dropped.
      int buffer = kReceiveBuffer;
      if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
      if (bind(fd, reinterpret_cast<sockaddr*>(&local), localLength) < 0) Fail(errno, "cannot bind " + address + ":" + std::to_string(port));
      if (i == 0 && port == 0) {
        sockaddr_storage first{};
        socklen_t firstLength = sizeof(first);
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&first), &firstLength) < 0) Fail(errno, "getsockname");
        std::memcpy(&local, &first, firstLength);
      }
    }
    // Port 0 binds the first socket to a free port, which the others (SO_REUSEPORT) then share.
    sockaddr_storage bound{};
    socklen_t boundLength = sizeof(bound);
    if (getsockname(fds_[0], reinterpret_cast<sockaddr*>(&bound), &boundLength) < 0) Fail(errno, "getsockname");
    port_ = ntohs(family_ == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    tsfn_ = Napi::ThreadSafeFunction::New(env, onMiss, "kubenft.udpAnswers", kMissQueue, 1);
    for (int fd : fds_) threads_.emplace_back([this, fd] { Serve(fd); });
  }

  ~Server() { Close(); }

  void Close() {
    if (closed_) return;
    closed_ = true;
    uint64_t one = 1;
    if (write(stopFd_, &one, sizeof(one)) < 0) { /* cannot fail for a fresh eventfd */ }
    for (auto& thread : threads_) thread.join();
    if (tsfn_) tsfn_.Release();
    for (int fd : fds_) close(fd);
    fds_.clear();
    close(stopFd_);
    handle_.Reset();
  }

  void Hold(Napi::Object handle) { handle_ = Napi::Persistent(handle); }

  uint16_t Port() const { return port_; }

  // Builds a new table from the current one and the ops, then swaps it in.
  void Update(const uint8_t* p, size_t n) {
    auto next = std::make_shared<Table>(*std::atomic_load(&table_));
    std::array<std::shared_ptr<Shard>, kShards> copied;  // the shards this update writes, copied once
    auto writable = [&](const std::string& key) -> Shard& {
      size_t index = Table::ShardOf(key);
      if (!copied[index]) next->shards[index] = copied[index] = std::make_shared<Shard>(*next->shards[index]);
      return *copied[index];
    };
    size_t at = 0;
    auto need = [&](size_t bytes) {
      if (at + bytes > n) throw std::invalid_argument("table update truncated at byte " + std::to_string(at));
    };
    std::string key;
    while (at < n) {
      uint8_t op = p[at++];
      if (op == kClear) {
        for (size_t index = 0; index < kShards; index++) next->shards[index] = copied[index] = std::make_shared<Shard>();
        continue;
      }
      if (op == kSetAuthority) {
        need(5);
        uint8_t slot = p[at];
        uint16_t count = Get16(p + at + 1), length = Get16(p + at + 3);
        at += 5;
        need(length);
        if (slot == kNoAuthority) throw std::invalid_argument("authority slot 255 is reserved");
        if (next->authorities.size() <= slot) next->authorities.resize(slot + 1);
        next->authorities[slot] = Authority{count, std::string(reinterpret_cast<const char*>(p + at), length)};
        at += length;
        continue;
      }
      need(6);
      uint8_t mode = p[at];
      uint16_t type = Get16(p + at + 1), klass = Get16(p + at + 3);
      uint8_t nameLength = p[at + 5];
      at += 6;
      need(nameLength);
      if (mode > kSuffix) throw std::invalid_argument("unknown match mode " + std::to_string(mode));
      MakeKey(key, mode, mode == kExact ? type : 0, klass, p + at, nameLength);
      at += nameLength;
      if (op == kRemove) {
        writable(key).erase(key);
        continue;
      }
      Entry entry;
      if (op == kSetAnswer) {
        need(2);
        uint16_t length = Get16(p + at);
        at += 2;
        need(length);
        entry.packet.assign(reinterpret_cast<const char*>(p + at), length);
        at += length;
        need(2);
        uint16_t offsets = Get16(p + at);
        at += 2;
        need(2 * offsets + 3);
        for (uint16_t i = 0; i < offsets; i++, at += 2) {
          uint16_t offset = Get16(p + at);
          if (offset < kHeader || offset + nameLength > length) throw std::invalid_argument("name offset outside the answer");
          entry.nameAt.push_back(offset);
        }
        entry.zoneLength = p[at];
        uint16_t zoneOffsets = Get16(p + at + 1);
        at += 3;
        need(2 * zoneOffsets);
        if (entry.zoneLength > nameLength) throw std::invalid_argument("zone longer than the name");
        for (uint16_t i = 0; i < zoneOffsets; i++, at += 2) {
          uint16_t offset = Get16(p + at);
          if (offset < kHeader || offset + entry.zoneLength > length) throw std::invalid_argument("zone offset outside the answer");
          entry.zoneAt.push_back(offset);
        }
        if (length < kHeader + nameLength + 4) throw std::invalid_argument("answer shorter than its question");
      } else if (op == kSetTemplate) {
        need(4);
        entry.pass = p[at] != 0;
        entry.flags = Get16(p + at + 1);
        entry.authority = p[at + 3];
        at += 4;
      } else {
        throw std::invalid_argument("unknown table op " + std::to_string(op));
      }
      writable(key)[key] = std::move(entry);
    }
    std::atomic_store(&table_, std::shared_ptr<const Table>(std::move(next)));
  }

  // From JS (answers to what onMiss passed up): sent from the same address and port.
  void Send(const uint8_t* p, size_t n, const std::string& address, uint16_t port) {
    sockaddr_storage to{};
    socklen_t length = Resolve(address, port, to);
    if (!length || fds_.empty()) return;
    sendto(fds_[0], p, n, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), length);
  }

  Napi::Object TakeCounters(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Napi::Object requests = Napi::Object::New(env);
    for (size_t type = 0; type < 257; type++) {
      uint64_t count = counters_.requests[type].exchange(0);
      if (count) requests.Set(type == 256 ? std::string("other") : std::to_string(type), static_cast<double>(count));
    }
    Napi::Object responses = Napi::Object::New(env);
    for (size_t rcode = 0; rcode < 16; rcode++) {
      uint64_t count = counters_.responses[rcode].exchange(0);
      if (count) responses.Set(std::to_string(rcode), static_cast<double>(count));
    }
    Napi::Array durations = Napi::Array::New(env, bounds_.size());
    for (size_t i = 0; i < bounds_.size(); i++) durations.Set(i, static_cast<double>(counters_.durations[i].exchange(0)));
    o.Set("requests", requests);
    o.Set("responses", responses);
    o.Set("durationBuckets", durations);
    o.Set("durationSum", static_cast<double>(counters_.durationNs.exchange(0)) / 1e9);
    o.Set("dropped", static_cast<double>(counters_.dropped.exchange(0)));
    return o;
  }

 private:
  static socklen_t Resolve(const std::string& address, uint16_t port, sockaddr_storage& out) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
    if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      return sizeof(sockaddr_in);
    }
    if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      return sizeof(sockaddr_in6);
    }
    return 0;
  }

  [[noreturn]] void Fail(int err, const std::string& what) {
    for (int fd : fds_) close(fd);
    fds_.clear();
    close(stopFd_);
    throw SysError{err, what + ": " + ErrnoText(err)};
  }

  // The response to `q` from the table into `out` (kOutSlot bytes); 0 when JS must answer.
  size_t Answer(const Table& table, const uint8_t* p, const Question& q, uint8_t* out) {
    thread_local std::string key;
    size_t nameLength = q.labelAt[q.labels] + 1;
    size_t opt = q.ednsSize ? sizeof(kOpt) : 0;
    size_t limit = q.ednsSize ? q.ednsSize : kClassicUdpSize;
    MakeKey(key, kExact, q.type, q.klass, q.lower, nameLength);
    const Entry* found = table.Find(key);
    size_t length;
    if (found) {
      const Entry& e = *found;
      if (e.packet.size() + opt > limit) return Truncated(p, q, static_cast<uint8_t>(e.packet[2]), static_cast<uint8_t>(e.packet[3]), out);
      length = e.packet.size();
      std::memcpy(out, e.packet.data(), length);
      std::memcpy(out, p, 2);
      out[2] |= p[2] & kFlagRd;
      std::memcpy(out + kHeader, p + kHeader, q.nameEnd - kHeader);
      for (uint16_t at : e.nameAt) std::memcpy(out + at, p + kHeader, q.nameEnd - kHeader);
      for (uint16_t at : e.zoneAt) std::memcpy(out + at, p + q.nameEnd - e.zoneLength, e.zoneLength);
    } else {
      MakeKey(key, kName, 0, q.klass, q.lower, nameLength);
      found = table.Find(key);
      // Then every suffix, longest first: "a.b.c", "b.c", "c", ".".
      for (size_t label = 0; !found && label <= q.labels; label++) {
        size_t from = q.labelAt[label];
        MakeKey(key, kSuffix, 0, q.klass, q.lower + from, nameLength - from);
        found = table.Find(key);
      }
      if (!found || found->pass) return 0;
      const Entry& e = *found;
      const Authority* authority = e.authority < table.authorities.size() ? &table.authorities[e.authority] : nullptr;
      size_t records = authority ? authority->records.size() : 0;
      if (q.questionEnd + records + opt > limit) return Truncated(p, q, e.flags >> 8, e.flags & 0xff, out);
      std::memcpy(out, p, 2);
      out[2] = (e.flags >> 8) | (p[2] & kFlagRd);
      out[3] = e.flags & 0xff;
      Put16(out + 4, 1);
      Put16(out + 6, 0);
      Put16(out + 8, authority ? authority->count : 0);
      Put16(out + 10, 0);
      std::memcpy(out + kHeader, p + kHeader, q.questionEnd - kHeader);
      length = q.questionEnd;
      if (authority) std::memcpy(out + length, authority->records.data(), records);
      length += records;
    }
    if (opt) {
      std::memcpy(out + length, kOpt, opt);
      length += opt;
      Put16(out + 10, Get16(out + 10) + 1);
    }
    return length;
  }

  // Only the question, with TC: the client asks again over TCP.
  static size_t Truncated(const uint8_t* p, const Question& q, uint8_t flags2, uint8_t flags3, uint8_t* out) {
    std::memcpy(out, p, q.questionEnd);
    out[2] = flags2 | kFlagTc | (p[2] & kFlagRd);
    out[3] = flags3;
    Put16(out + 6, 0);
    Put16(out + 8, 0);
    Put16(out + 10, q.ednsSize ? 1 : 0);
    size_t length = q.questionEnd;
    if (q.ednsSize) {
      std::memcpy(out + length, kOpt, sizeof(kOpt));
      length += sizeof(kOpt);
    }
    return length;
  }

  void Serve(int fd) {
    std::vector<uint8_t> in(kBatch * kInSlot), out(kBatch * kOutSlot);
    mmsghdr inMsgs[kBatch], outMsgs[kBatch];
    iovec inIov[kBatch], outIov[kBatch];
    sockaddr_storage from[kBatch];
    for (int i = 0; i < kBatch; i++) {
      inIov[i] = {&in[i * kInSlot], kInSlot};
      outIov[i] = {&out[i * kOutSlot], 0};
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    Question q;
    for (;;) {
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      for (;;) {
        for (int i = 0; i < kBatch; i++) {
          inMsgs[i].msg_hdr = {};
          inMsgs[i].msg_hdr.msg_name = &from[i];
          inMsgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
          inMsgs[i].msg_hdr.msg_iov = &inIov[i];
          inMsgs[i].msg_hdr.msg_iovlen = 1;
        }
        int received = recvmmsg(fd, inMsgs, kBatch, MSG_DONTWAIT, nullptr);
        if (received <= 0) break;
        auto started = std::chrono::steady_clock::now();
        std::shared_ptr<const Table> table = std::atomic_load(&table_);
        int answered = 0;
        for (int i = 0; i < received; i++) {
          const uint8_t* p = &in[i * kInSlot];
          size_t n = inMsgs[i].msg_len;
          if (inMsgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            counters_.dropped++;
            continue;
          }
          Parsed parsed = ParseQuestion(p, n, q);
          if (parsed == Parsed::kDrop) continue;
          size_t length = parsed == Parsed::kQuestion ? Answer(*table, p, q, &out[answered * kOutSlot]) : 0;
          if (length == 0) {
            PassUp(p, n, from[i]);
            continue;
          }
          counters_.requests[q.type < 256 ? q.type : 256]++;
          counters_.responses[out[answered * kOutSlot + 3] & 0x0f]++;
          outIov[answered].iov_len = length;
          outMsgs[answered].msg_hdr = {};
          outMsgs[answered].msg_hdr.msg_name = &from[i];
          outMsgs[answered].msg_hdr.msg_namelen = inMsgs[i].msg_hdr.msg_namelen;
          outMsgs[answered].msg_hdr.msg_iov = &outIov[answered];
          outMsgs[answered].msg_hdr.msg_iovlen = 1;
          answered++;
        }
        for (int sent = 0; sent < answered;) {
          int n = sendmmsg(fd, outMsgs + sent, answered - sent, 0);
          if (n < 0) {
            if (errno == EINTR) continue;
            break;  // a full send buffer or an unreachable client: those answers are lost, as with sendto
          }
          sent += n;
        }
        if (answered > 0) Observe(answered, std::chrono::steady_clock::now() - started);
      }
    }
  }

  void Observe(int answered, std::chrono::steady_clock::duration took) {
    uint64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
    double seconds = ns / 1e9;
    for (size_t i = 0; i < bounds_.size(); i++) {
      if (seconds <= bounds_[i]) {
        counters_.durations[i] += answered;
        break;
      }
    }
    counters_.durationNs += ns * answered;
  }

  void PassUp(const uint8_t* p, size_t n, const sockaddr_storage& from) {
    char text[INET6_ADDRSTRLEN] = "";
    uint16_t port;
    if (from.ss_family == AF_INET6) {
      auto* v6 = reinterpret_cast<const sockaddr_in6*>(&from);
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
      port = ntohs(v6->sin6_port);
    } else {
      auto* v4 = reinterpret_cast<const sockaddr_in*>(&from);
      inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
      port = ntohs(v4->sin_port);
    }
    auto* packet = new std::string(reinterpret_cast<const char*>(p), n);
    std::string address = text;
    napi_status status = tsfn_.NonBlockingCall([packet, address, port](Napi::Env env, Napi::Function callback) {
      std::unique_ptr<std::string> owned(packet);
      try {
        callback.Call({Napi::Buffer<char>::Copy(env, owned->data(), owned->size()), Napi::String::New(env, address), Napi::Number::New(env, port)});
      } catch (const Napi::Error& e) {
        napi_fatal_exception(env, e.Value());
      }
    });
    if (status != napi_ok) {
      delete packet;
      counters_.dropped++;
    }
  }

  std::vector<double> bounds_;
  Counters counters_;
  std::shared_ptr<const Table> table_;
  int family_ = AF_INET;
  uint16_t port_ = 0;
  int stopFd_ = -1;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::ObjectReference handle_;
  bool closed_ = false;
};

}  // namespace

Napi::Value UdpAnswers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "udpAnswers({ address, port, threads, durationBounds }, onMiss)");
  Napi::Object options = info[0].As<Napi::Object>();
  std::string address = options.Get("address").As<Napi::String>();
  uint32_t port = options.Get("port").As<Napi::Number>().Uint32Value();
  uint32_t threads = options.Has("threads") ? options.Get("threads").As<Napi::Number>().Uint32Value() : 1;
  if (port > 65535 || threads < 1 || threads > 64) throw Napi::RangeError::New(env, "udpAnswers: port 0-65535, threads 1-64");
  std::vector<double> bounds;
  Napi::Array bucketBounds = options.Get("durationBounds").As<Napi::Array>();
  for (uint32_t i = 0; i < bucketBounds.Length(); i++) bounds.push_back(bucketBounds.Get(i).As<Napi::Number>().DoubleValue());
  std::shared_ptr<Server> server;
  try {
    server = std::make_shared<Server>(env, address, static_cast<uint16_t>(port), static_cast<int>(threads), std::move(bounds), info[1].As<Napi::Function>());
  } catch (const SysError& e) {
    throw MakeError(env, e.message, e.err);
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("port", Napi::Number::New(env, server->Port()));
  handle.Set("update", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "update(buffer)");
    auto ops = info[0].As<Napi::Buffer<uint8_t>>();
    try {
      server->Update(ops.Data(), ops.Length());
    } catch (const std::invalid_argument& e) {
      throw Napi::TypeError::New(info.Env(), e.what());
    }
  }, "update"));
  handle.Set("send", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) {
    if (info.Length() < 3 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "send(buffer, address, port)");
    auto packet = info[0].As<Napi::Buffer<uint8_t>>();
    server->Send(packet.Data(), packet.Length(), info[1].As<Napi::String>(), static_cast<uint16_t>(info[2].As<Napi::Number>().Uint32Value()));
  }, "send"));
  handle.Set("takeCounters", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) { return server->TakeCounters(info.Env()); }, "takeCounters"));
  handle.Set("close", Napi::Function::New(env, [server](const Napi::CallbackInfo&) { server->Close(); }, "close"));
  server->Hold(handle);
  // A worker thread that ends without close() must not leave threads serving for it.
  env.AddCleanupHook([server] { server->Close(); });
  return handle;
}

}  // namespace knft
