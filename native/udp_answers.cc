// answerTable(): a table of prepared DNS answers that JS fills, and reads back (its
// answer to a query, or a name's prepared answers) for what it serves itself.
// udpAnswers(options, onMiss): a UDP socket (or several, SO_REUSEPORT) served by
// native threads with recvmmsg/sendmmsg, answering DNS queries from such a table;
// several sockets (addresses) share one. Generic DNS only: the table says what to
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

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
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
constexpr uint16_t kClassIn = 1;

enum Mode : uint8_t { kExact = 0, kName = 1, kSuffix = 2 };
enum Op : uint8_t { kRemove = 0, kSetAnswer = 1, kSetTemplate = 2, kSetAuthority = 3, kClear = 4 };

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void Put16(uint8_t* p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
uint32_t Get32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
void Put32(uint8_t* p, uint32_t v) { Put16(p, v >> 16); Put16(p + 2, v & 0xffff); }

// A name's empty response: pass the query to JS, or answer with these header flags and authority.
struct Template {
  bool pass = false;
  uint16_t flags = 0;
  uint8_t authority = kNoAuthority;
};

// One prepared answer as JS sent it, minus its header's ID and question (the query's are copied in).
struct Answer {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint16_t counts[3] = {};  // answer, authority, additional records
  uint8_t zoneLength = 0;
  std::vector<uint16_t> nameAt, zoneAt;  // offsets in the whole response, as JS computed them
  std::string records;
};

// A name (class and lower-cased wire name) with its template, if any, and its answers by type.
// Kept encoded in one allocation per name (see Encode) since a table holds 10^5 of them; this
// decoded form exists only while an update changes the name.
struct Name {
  std::string key;
  bool hasTemplate = false;
  Template tmpl;
  std::vector<Answer> answers;
  bool Empty() const { return !hasTemplate && answers.empty(); }
};

// Encoded: u32 size | u16 key length | key | u8 has template | u8 pass | u16 flags | u8 authority |
// u8 answers | per answer: u16 type | u16 flags | 3 x u16 counts | u8 zone length |
// u16 nameAt count | u16 zoneAt count | u16 records length | u16 offsets... | records.
constexpr size_t kAnswerHead = 17;

std::string_view KeyOf(const uint8_t* record) { return {reinterpret_cast<const char*>(record + 6), Get16(record + 4)}; }

std::unique_ptr<uint8_t[]> Encode(const Name& name) {
  if (name.answers.size() > 255) throw std::invalid_argument("more than 255 types at one name");
  size_t size = 6 + name.key.size() + 6;
  for (const Answer& a : name.answers) size += kAnswerHead + 2 * (a.nameAt.size() + a.zoneAt.size()) + a.records.size();
  std::unique_ptr<uint8_t[]> out(new uint8_t[size]);
  uint8_t* at = out.get();
  Put32(at, static_cast<uint32_t>(size));
  Put16(at + 4, static_cast<uint16_t>(name.key.size()));
  std::memcpy(at + 6, name.key.data(), name.key.size());
  at += 6 + name.key.size();
  at[0] = name.hasTemplate;
  at[1] = name.tmpl.pass;
  Put16(at + 2, name.tmpl.flags);
  at[4] = name.tmpl.authority;
  at[5] = static_cast<uint8_t>(name.answers.size());
  at += 6;
  for (const Answer& a : name.answers) {
    Put16(at, a.type);
    Put16(at + 2, a.flags);
    for (int i = 0; i < 3; i++) Put16(at + 4 + 2 * i, a.counts[i]);
    at[10] = a.zoneLength;
    Put16(at + 11, static_cast<uint16_t>(a.nameAt.size()));
    Put16(at + 13, static_cast<uint16_t>(a.zoneAt.size()));
    Put16(at + 15, static_cast<uint16_t>(a.records.size()));
    at += kAnswerHead;
    for (uint16_t offset : a.nameAt) Put16(at, offset), at += 2;
    for (uint16_t offset : a.zoneAt) Put16(at, offset), at += 2;
    std::memcpy(at, a.records.data(), a.records.size());
    at += a.records.size();
  }
  return out;
}

Name Decode(const uint8_t* record) {
  Name name;
  name.key = std::string(KeyOf(record));
  const uint8_t* at = record + 6 + name.key.size();
  name.hasTemplate = at[0];
  name.tmpl = Template{at[1] != 0, Get16(at + 2), at[4]};
  size_t answers = at[5];
  at += 6;
  for (size_t i = 0; i < answers; i++) {
    Answer a;
    a.type = Get16(at);
    a.flags = Get16(at + 2);
    for (int c = 0; c < 3; c++) a.counts[c] = Get16(at + 4 + 2 * c);
    a.zoneLength = at[10];
    size_t nameAts = Get16(at + 11), zoneAts = Get16(at + 13), length = Get16(at + 15);
    at += kAnswerHead;
    for (size_t k = 0; k < nameAts; k++, at += 2) a.nameAt.push_back(Get16(at));
    for (size_t k = 0; k < zoneAts; k++, at += 2) a.zoneAt.push_back(Get16(at));
    a.records.assign(reinterpret_cast<const char*>(at), length);
    at += length;
    name.answers.push_back(std::move(a));
  }
  return name;
}

// An encoded answer, read in place on the hot path.
struct AnswerView {
  uint16_t flags;
  const uint8_t* counts;
  uint8_t zoneLength;
  const uint8_t* nameAt;
  size_t nameAts;
  const uint8_t* zoneAt;
  size_t zoneAts;
  const uint8_t* records;
  size_t length;
};

// The template and the answer to `type` of an encoded name; false when it has neither.
bool Read(const uint8_t* record, uint16_t type, const Template** tmpl, Template& storage, AnswerView& answer, bool& found) {
  const uint8_t* at = record + 6 + Get16(record + 4);
  *tmpl = nullptr;
  if (at[0]) {
    storage = Template{at[1] != 0, Get16(at + 2), at[4]};
    *tmpl = &storage;
  }
  size_t answers = at[5];
  at += 6;
  found = false;
  for (size_t i = 0; i < answers; i++) {
    size_t nameAts = Get16(at + 11), zoneAts = Get16(at + 13), length = Get16(at + 15);
    if (Get16(at) == type) {
      const uint8_t* offsets = at + kAnswerHead;
      answer = AnswerView{Get16(at + 2), at + 4, at[10], offsets, nameAts, offsets + 2 * nameAts, zoneAts, offsets + 2 * (nameAts + zoneAts), length};
      found = true;
      break;
    }
    at += kAnswerHead + 2 * (nameAts + zoneAts) + length;
  }
  return found || *tmpl;
}

size_t HashOf(std::string_view key) { return std::hash<std::string_view>{}(key); }

// Shards, so that an update copies only the shards it touches: copying a whole table of 100k
// entries took ~65 ms per sync at 10k services. A shard is an open-addressing set (linear
// probing) of encoded names: a slot and the name's allocation, no node per entry.
constexpr size_t kShards = 256;

class Shard {
 public:
  Shard() = default;
  Shard(const Shard& other) : slots_(other.slots_.size()), count_(other.count_) {
    for (size_t i = 0; i < slots_.size(); i++) {
      const uint8_t* record = other.slots_[i].get();
      if (!record) continue;
      slots_[i].reset(new uint8_t[Get32(record)]);
      std::memcpy(slots_[i].get(), record, Get32(record));
    }
  }
  Shard& operator=(const Shard&) = delete;

  // `hash`: HashOf(key); its low bits chose the shard, the rest choose the slot.
  const uint8_t* Find(std::string_view key, size_t hash) const {
    if (slots_.empty()) return nullptr;
    size_t mask = slots_.size() - 1;
    for (size_t i = (hash / kShards) & mask;; i = (i + 1) & mask) {
      const uint8_t* record = slots_[i].get();
      if (!record) return nullptr;
      if (KeyOf(record) == key) return record;
    }
  }

  void Put(std::unique_ptr<uint8_t[]> record, size_t hash) {
    if ((count_ + 1) * 4 > slots_.size() * 3) Grow();
    size_t i = SlotOf(KeyOf(record.get()), hash);
    if (!slots_[i]) count_++;
    slots_[i] = std::move(record);
  }

  void Erase(std::string_view key, size_t hash) {
    if (slots_.empty()) return;
    size_t mask = slots_.size() - 1;
    size_t hole = SlotOf(key, hash);
    if (!slots_[hole]) return;
    slots_[hole].reset();
    count_--;
    // Backward shift: a later name of the probe run moves into the hole unless its home slot lies
    // cyclically after the hole (then it would no longer be found from home).
    for (size_t next = (hole + 1) & mask; slots_[next]; next = (next + 1) & mask) {
      size_t home = (HashOf(KeyOf(slots_[next].get())) / kShards) & mask;
      bool stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next);
      if (stays) continue;
      slots_[hole] = std::move(slots_[next]);
      hole = next;
    }
  }

 private:
  // The slot holding `key`, or the empty slot where it would go.
  size_t SlotOf(std::string_view key, size_t hash) const {
    size_t mask = slots_.size() - 1;
    size_t i = (hash / kShards) & mask;
    while (slots_[i] && KeyOf(slots_[i].get()) != key) i = (i + 1) & mask;
    return i;
  }

  void Grow() {
    std::vector<std::unique_ptr<uint8_t[]>> old(std::max<size_t>(8, slots_.size() * 2));
    old.swap(slots_);
    for (auto& record : old) {
      if (record) slots_[SlotOf(KeyOf(record.get()), HashOf(KeyOf(record.get())))] = std::move(record);
    }
  }

  std::vector<std::unique_ptr<uint8_t[]>> slots_;
  size_t count_ = 0;
};

struct Authority {
  uint16_t count = 0;
  std::string records;
};

struct Table {
  std::array<std::shared_ptr<const Shard>, kShards> shards;
  // Keyed as names are; a zone has a handful.
  std::unordered_map<std::string, Template> suffixes;
  std::vector<Authority> authorities;

  Table() { shards.fill(std::make_shared<const Shard>()); }

  const uint8_t* Find(std::string_view key) const {
    size_t hash = HashOf(key);
    return shards[hash % kShards]->Find(key, hash);
  }
};

// class, then the lower-cased wire name.
void MakeKey(std::string& key, uint16_t klass, const uint8_t* name, size_t length) {
  key.resize(2 + length);
  key[0] = static_cast<char>(klass >> 8);
  key[1] = static_cast<char>(klass & 0xff);
  std::memcpy(&key[2], name, length);
}

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

// `fromJs`: the JS server parsed the query already and asks for the table's answer to it, whatever
// its opcode or (meta) type.
Parsed ParseQuestion(const uint8_t* p, size_t n, Question& q, bool fromJs = false) {
  q.labels = 0;
  q.ednsSize = 0;
  if (n < kHeader) return Parsed::kPass;
  if (p[2] & kFlagQr) return Parsed::kDrop;  // a response: JS drops them too
  if (((p[2] & 0x78) != 0 && !fromJs) || Get16(p + 4) != 1) return Parsed::kPass;  // not a plain QUERY with one question
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
  if (q.type >= 128 && q.type <= 255 && !fromJs) return Parsed::kPass;
  if (Get16(p + 10) > 0 && Get16(p + 6) == 0 && Get16(p + 8) == 0) {
    size_t opt = q.questionEnd;
    if (opt + 11 <= n && p[opt] == 0 && Get16(p + opt + 1) == kTypeOpt) {
      uint16_t size = Get16(p + opt + 3);
      q.ednsSize = size < kClassicUdpSize ? kClassicUdpSize : size > kEdnsUdpSize ? kEdnsUdpSize : size;
    }
  }
  return Parsed::kQuestion;
}


// The table's current version. One writer (the JS thread that owns it) builds the next version
// from the current one and the ops, then swaps it in; readers (the sockets' threads, and JS
// answering what they pass up or what comes over TCP) never lock.
class Store {
 public:
  std::shared_ptr<const Table> Load() const { return std::atomic_load(&table_); }

  void Update(const uint8_t* p, size_t n) {
    auto next = std::make_shared<Table>(*Load());
    std::array<std::shared_ptr<Shard>, kShards> copied;  // the shards this update writes, copied once
    // The names this update changes, decoded once, encoded back at the end.
    std::unordered_map<std::string, Name> changed;
    auto nameOf = [&](const std::string& key) -> Name& {
      auto found = changed.find(key);
      if (found != changed.end()) return found->second;
      const uint8_t* record = next->Find(key);
      Name name = record ? Decode(record) : Name{};
      name.key = key;
      return changed.emplace(key, std::move(name)).first->second;
    };
    size_t at = 0;
    auto need = [&](size_t bytes) {
      if (at + bytes > n) throw std::invalid_argument("table update truncated at byte " + std::to_string(at));
    };
    std::string key;
    while (at < n) {
      uint8_t op = p[at++];
      if (op == kClear) {
        next->shards.fill(std::make_shared<const Shard>());
        copied.fill(nullptr);
        changed.clear();
        next->suffixes.clear();
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
      if (op > kSetTemplate) throw std::invalid_argument("unknown table op " + std::to_string(op));
      need(6);
      uint8_t mode = p[at];
      uint16_t type = Get16(p + at + 1), klass = Get16(p + at + 3);
      uint8_t nameLength = p[at + 5];
      at += 6;
      need(nameLength);
      if (mode > kSuffix) throw std::invalid_argument("unknown match mode " + std::to_string(mode));
      if ((op == kSetAnswer) != (mode == kExact) && op != kRemove) throw std::invalid_argument("answers are exact matches, templates name or suffix ones");
      MakeKey(key, klass, p + at, nameLength);
      at += nameLength;
      if (mode == kSuffix) {
        if (op == kRemove) {
          next->suffixes.erase(key);
          continue;
        }
        need(4);
        next->suffixes[key] = Template{p[at] != 0, Get16(p + at + 1), p[at + 3]};
        at += 4;
        continue;
      }
      Name& name = nameOf(key);
      auto ofType = [&](uint16_t wanted) {
        return std::find_if(name.answers.begin(), name.answers.end(), [&](const Answer& a) { return a.type == wanted; });
      };
      if (op == kRemove) {
        if (mode == kName) name = Name{key};
        else if (auto found = ofType(type); found != name.answers.end()) name.answers.erase(found);
        continue;
      }
      if (op == kSetTemplate) {
        need(4);
        name.hasTemplate = true;
        name.tmpl = Template{p[at] != 0, Get16(p + at + 1), p[at + 3]};
        at += 4;
        continue;
      }
      need(2);
      uint16_t length = Get16(p + at);
      at += 2;
      need(length);
      size_t questionEnd = kHeader + nameLength + 4;
      if (length < questionEnd) throw std::invalid_argument("answer shorter than its question");
      Answer answer;
      answer.type = type;
      answer.flags = Get16(p + at + 2);
      for (int c = 0; c < 3; c++) answer.counts[c] = Get16(p + at + 6 + 2 * c);
      answer.records.assign(reinterpret_cast<const char*>(p + at + questionEnd), length - questionEnd);
      at += length;
      need(2);
      uint16_t offsets = Get16(p + at);
      at += 2;
      need(2 * offsets + 3);
      for (uint16_t i = 0; i < offsets; i++, at += 2) {
        uint16_t offset = Get16(p + at);
        if (offset < questionEnd || offset + nameLength > length) throw std::invalid_argument("name offset outside the answer");
        answer.nameAt.push_back(offset);
      }
      answer.zoneLength = p[at];
      uint16_t zoneOffsets = Get16(p + at + 1);
      at += 3;
      need(2 * zoneOffsets);
      if (answer.zoneLength > nameLength) throw std::invalid_argument("zone longer than the name");
      for (uint16_t i = 0; i < zoneOffsets; i++, at += 2) {
        uint16_t offset = Get16(p + at);
        if (offset < questionEnd || offset + answer.zoneLength > length) throw std::invalid_argument("zone offset outside the answer");
        answer.zoneAt.push_back(offset);
      }
      if (auto found = ofType(type); found != name.answers.end()) *found = std::move(answer);
      else name.answers.push_back(std::move(answer));
    }
    for (auto& [changedKey, name] : changed) {
      size_t hash = HashOf(changedKey);
      size_t index = hash % kShards;
      if (!copied[index]) next->shards[index] = copied[index] = std::make_shared<Shard>(*next->shards[index]);
      if (name.Empty()) copied[index]->Erase(changedKey, hash);
      else copied[index]->Put(Encode(name), hash);
    }
    std::atomic_store(&table_, std::shared_ptr<const Table>(std::move(next)));
  }

 private:
  std::shared_ptr<const Table> table_ = std::make_shared<const Table>();
};

// Only the question, with TC: the client asks again over TCP.
size_t Truncated(const uint8_t* p, const Question& q, uint8_t flags2, uint8_t flags3, uint8_t* out) {
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

// The response to `q` from the table into `out` (room for max(limit, a truncated question) bytes);
// 0 when JS must answer.
size_t Respond(const Table& table, const uint8_t* p, const Question& q, size_t limit, uint8_t* out) {
  thread_local std::string key;
  size_t nameLength = q.labelAt[q.labels] + 1;
  size_t opt = q.ednsSize ? sizeof(kOpt) : 0;
  MakeKey(key, q.klass, q.lower, nameLength);
  const Template* tmpl = nullptr;
  Template storage;
  AnswerView answer{};
  bool found = false;
  if (const uint8_t* record = table.Find(key)) Read(record, q.type, &tmpl, storage, answer, found);
  size_t length;
  if (found) {
    length = q.questionEnd + answer.length;
    if (length + opt > limit) return Truncated(p, q, answer.flags >> 8, answer.flags & 0xff, out);
    std::memcpy(out, p, 2);
    out[2] = (answer.flags >> 8) | (p[2] & kFlagRd);
    out[3] = answer.flags & 0xff;
    Put16(out + 4, 1);
    std::memcpy(out + 6, answer.counts, 6);
    std::memcpy(out + kHeader, p + kHeader, q.questionEnd - kHeader);
    std::memcpy(out + q.questionEnd, answer.records, answer.length);
    for (size_t i = 0; i < answer.nameAts; i++) std::memcpy(out + Get16(answer.nameAt + 2 * i), p + kHeader, q.nameEnd - kHeader);
    for (size_t i = 0; i < answer.zoneAts; i++) std::memcpy(out + Get16(answer.zoneAt + 2 * i), p + q.nameEnd - answer.zoneLength, answer.zoneLength);
  } else {
    // Then every suffix, longest first: "a.b.c", "b.c", "c", ".".
    for (size_t label = 0; !tmpl && label <= q.labels; label++) {
      size_t from = q.labelAt[label];
      MakeKey(key, q.klass, q.lower + from, nameLength - from);
      auto suffix = table.suffixes.find(key);
      if (suffix != table.suffixes.end()) tmpl = &suffix->second;
    }
    if (!tmpl || tmpl->pass) return 0;
    const Authority* authority = tmpl->authority < table.authorities.size() ? &table.authorities[tmpl->authority] : nullptr;
    size_t records = authority ? authority->records.size() : 0;
    if (q.questionEnd + records + opt > limit) return Truncated(p, q, tmpl->flags >> 8, tmpl->flags & 0xff, out);
    std::memcpy(out, p, 2);
    out[2] = (tmpl->flags >> 8) | (p[2] & kFlagRd);
    out[3] = tmpl->flags & 0xff;
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

// The prepared answers of a name (lower-cased wire form, class IN) as JS sent them (ID 0), of one
// type or all; none: the name is not in the table.
std::optional<std::vector<std::pair<uint16_t, std::string>>> Prepared(const Table& table, const uint8_t* name, size_t length, int type) {
  std::string key;
  MakeKey(key, kClassIn, name, length);
  const uint8_t* record = table.Find(key);
  if (!record) return std::nullopt;
  std::vector<std::pair<uint16_t, std::string>> out;
  for (const Answer& a : Decode(record).answers) {
    if (type >= 0 && a.type != type) continue;
    std::string packet(kHeader + length + 4 + a.records.size(), '\0');
    auto* bytes = reinterpret_cast<uint8_t*>(packet.data());
    Put16(bytes + 2, a.flags);
    Put16(bytes + 4, 1);
    for (int c = 0; c < 3; c++) Put16(bytes + 6 + 2 * c, a.counts[c]);
    std::memcpy(bytes + kHeader, name, length);
    Put16(bytes + kHeader + length, a.type);
    Put16(bytes + kHeader + length + 2, kClassIn);
    std::memcpy(bytes + kHeader + length + 4, a.records.data(), a.records.size());
    out.emplace_back(a.type, std::move(packet));
  }
  return out;
}

struct Counters {
  std::atomic<uint64_t> requests[257] = {};  // by type; [256]: types above 255
  std::atomic<uint64_t> responses[16] = {};  // by rcode
  std::vector<std::atomic<uint64_t>> durations;  // per bucket bound
  std::atomic<uint64_t> durationNs{0};
  // Datagrams dropped: larger than a slot, or passed up while JS's queue was full.
  std::atomic<uint64_t> oversized{0}, backlog{0};
  explicit Counters(size_t buckets) : durations(buckets) {}
};

class Server {
 public:
  Server(Napi::Env env, std::shared_ptr<const Store> store, const std::string& address, uint16_t port, int threads, std::vector<double> bounds, Napi::Function onMiss)
      : bounds_(std::move(bounds)), counters_(bounds_.size()), store_(std::move(store)) {
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
    Napi::Object dropped = Napi::Object::New(env);
    dropped.Set("oversized", static_cast<double>(counters_.oversized.exchange(0)));
    dropped.Set("backlog", static_cast<double>(counters_.backlog.exchange(0)));
    o.Set("dropped", dropped);
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
        std::shared_ptr<const Table> table = store_->Load();
        int answered = 0;
        for (int i = 0; i < received; i++) {
          const uint8_t* p = &in[i * kInSlot];
          size_t n = inMsgs[i].msg_len;
          if (inMsgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            counters_.oversized++;
            continue;
          }
          Parsed parsed = ParseQuestion(p, n, q);
          if (parsed == Parsed::kDrop) continue;
          size_t length = parsed == Parsed::kQuestion ? Respond(*table, p, q, q.ednsSize ? q.ednsSize : kClassicUdpSize, &out[answered * kOutSlot]) : 0;
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
      counters_.backlog++;
    }
  }

  std::vector<double> bounds_;
  Counters counters_;
  std::shared_ptr<const Store> store_;
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

namespace {

// A table handle's Store, for the sockets that serve it.
using StoreRef = std::shared_ptr<Store>;

}  // namespace

Napi::Value AnswerTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto store = std::make_shared<Store>();
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("store", Napi::External<StoreRef>::New(env, new StoreRef(store), [](Napi::Env, StoreRef* ref) { delete ref; }));
  handle.Set("update", Napi::Function::New(env, [store](const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "update(buffer)");
    auto ops = info[0].As<Napi::Buffer<uint8_t>>();
    try {
      store->Update(ops.Data(), ops.Length());
    } catch (const std::invalid_argument& e) {
      throw Napi::TypeError::New(info.Env(), e.what());
    }
  }, "update"));
  handle.Set("answer", Napi::Function::New(env, [store](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "answer(query, limit)");
    auto query = info[0].As<Napi::Buffer<uint8_t>>();
    size_t limit = std::min<double>(info[1].As<Napi::Number>().DoubleValue(), 65535);
    Question q;
    if (ParseQuestion(query.Data(), query.Length(), q, true) != Parsed::kQuestion) return info.Env().Undefined();
    thread_local std::vector<uint8_t> out;
    out.resize(std::max(limit, q.questionEnd + sizeof(kOpt)));
    size_t length = Respond(*store->Load(), query.Data(), q, limit, out.data());
    if (!length) return info.Env().Undefined();
    return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), length);
  }, "answer"));
  handle.Set("prepared", Napi::Function::New(env, [store](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "prepared(wireName[, type])");
    auto name = info[0].As<Napi::Buffer<uint8_t>>();
    int type = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
    auto prepared = Prepared(*store->Load(), name.Data(), name.Length(), type);
    if (!prepared) return info.Env().Undefined();
    Napi::Array out = Napi::Array::New(info.Env(), prepared->size());
    for (size_t i = 0; i < prepared->size(); i++) {
      Napi::Object entry = Napi::Object::New(info.Env());
      entry.Set("type", (*prepared)[i].first);
      entry.Set("packet", Napi::Buffer<char>::Copy(info.Env(), (*prepared)[i].second.data(), (*prepared)[i].second.size()));
      out.Set(i, entry);
    }
    return out;
  }, "prepared"));
  return handle;
}

Napi::Value UdpAnswers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "udpAnswers({ address, port, threads, durationBounds, table }, onMiss)");
  Napi::Object options = info[0].As<Napi::Object>();
  std::string address = options.Get("address").As<Napi::String>();
  uint32_t port = options.Get("port").As<Napi::Number>().Uint32Value();
  uint32_t threads = options.Has("threads") ? options.Get("threads").As<Napi::Number>().Uint32Value() : 1;
  if (port > 65535 || threads < 1 || threads > 64) throw Napi::RangeError::New(env, "udpAnswers: port 0-65535, threads 1-64");
  Napi::Value table = options.Get("table");
  if (!table.IsObject() || !table.As<Napi::Object>().Get("store").IsExternal()) throw Napi::TypeError::New(env, "udpAnswers: table must be an answerTable()");
  StoreRef store = *table.As<Napi::Object>().Get("store").As<Napi::External<StoreRef>>().Data();
  std::vector<double> bounds;
  Napi::Array bucketBounds = options.Get("durationBounds").As<Napi::Array>();
  for (uint32_t i = 0; i < bucketBounds.Length(); i++) bounds.push_back(bucketBounds.Get(i).As<Napi::Number>().DoubleValue());
  std::shared_ptr<Server> server;
  try {
    server = std::make_shared<Server>(env, store, address, static_cast<uint16_t>(port), static_cast<int>(threads), std::move(bounds), info[1].As<Napi::Function>());
  } catch (const SysError& e) {
    throw MakeError(env, e.message, e.err);
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("port", Napi::Number::New(env, server->Port()));
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
