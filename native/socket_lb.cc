// Socket-level load balancing: loads the cgroup sock_addr programs of bpf/socket_lb.bpf.c (embedded
// as a bpftool skeleton), attaches them to a cgroup as bpf_links, pins links and maps so a new
// process takes them over without a gap, edits the maps in batches, and destroys connected UDP
// sockets that the programs sent to an endpoint that is gone. Generic: no Kubernetes here.
#include "netlink.h"
#include "socket_lb.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "bpf/socket_lb.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace knft {
namespace {

// libbpf explains a failure (verifier log, missing hook) on its print callback: keep the last
// lines to put in the error instead of letting it write to the agent's stderr.
std::mutex libbpfLogMutex;
std::string libbpfLog;

int CollectLibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  vsnprintf(line, sizeof line, format, args);
  std::lock_guard<std::mutex> lock(libbpfLogMutex);
  libbpfLog += line;
  if (libbpfLog.size() > 4096) libbpfLog.erase(0, libbpfLog.size() - 4096);
  return 0;
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(libbpfLogMutex);
  std::string log;
  log.swap(libbpfLog);
  while (!log.empty() && log.back() == '\n') log.pop_back();
  return log.empty() ? "" : " (libbpf: " + log + ")";
}

// Programs in a fixed order with their pin names; the skeleton's programs by name.
std::vector<std::pair<std::string, bpf_program*>> Programs(socket_lb* skel) {
  std::vector<std::pair<std::string, bpf_program*>> programs;
  bpf_program* program;
  bpf_object__for_each_program(program, skel->obj) programs.emplace_back(bpf_program__name(program), program);
  return programs;
}

bpf_map* MapNamed(socket_lb* skel, const std::string& name) {
  if (name == "services") return skel->maps.slb_services;
  if (name == "slots") return skel->maps.slb_slots;
  if (name == "reverse") return skel->maps.slb_reverse;
  if (name == "affinity") return skel->maps.slb_affinity;
  return nullptr;
}

const char* const kMapNames[] = {"services", "slots", "reverse", "affinity"};

std::string LinkPin(const std::string& dir, const std::string& program) { return dir + "/link_" + program; }
std::string MapPin(const std::string& dir, const std::string& map) { return dir + "/map_" + map; }

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class SocketLb : public Napi::ObjectWrap<SocketLb> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SocketLb", {
        InstanceMethod("attach", &SocketLb::Attach),
        InstanceMethod("update", &SocketLb::Update),
        InstanceMethod("remove", &SocketLb::Remove),
        InstanceMethod("dump", &SocketLb::DumpMap),
        InstanceMethod("destroyUdpSockets", &SocketLb::DestroyUdpSockets),
        InstanceMethod("close", &SocketLb::Close),
    });
  }

  // new SocketLb({ pinDir?: string, hostNetnsCookie?: bigint })
  explicit SocketLb(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SocketLb>(info) {
    Napi::Env env = info.Env();
    Napi::Object options = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    if (options.Has("pinDir") && options.Get("pinDir").IsString()) pinDir_ = options.Get("pinDir").As<Napi::String>();
    uint64_t hostCookie = 0;
    if (options.Has("hostNetnsCookie") && options.Get("hostNetnsCookie").IsBigInt()) {
      bool lossless;
      hostCookie = options.Get("hostNetnsCookie").As<Napi::BigInt>().Uint64Value(&lossless);
    }
    libbpf_set_print(CollectLibbpfLog);
    skel_ = socket_lb__open();
    if (!skel_) throw MakeError(env, "opening the socket LB programs failed" + TakeLibbpfLog(), errno);
    skel_->rodata->host_only = hostCookie != 0;
    skel_->rodata->host_netns_cookie = hostCookie;
    if (!pinDir_.empty()) {
      // A pinned map of the same layout is reused: the running programs and the new ones share it.
      for (const char* name : kMapNames) bpf_map__set_pin_path(MapNamed(skel_, name), MapPin(pinDir_, name).c_str());
    }
    int err = socket_lb__load(skel_);
    if (err) {
      socket_lb__destroy(skel_);
      skel_ = nullptr;
      throw MakeError(env, "loading the socket LB programs failed: " + ErrnoText(-err) + TakeLibbpfLog(), -err);
    }
  }

  ~SocketLb() override { Release(); }

 private:
  // attach(cgroupPath): every program as a bpf_link on the cgroup; all of them or none.
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Loaded(env);
    std::string cgroup = info[0].As<Napi::String>();
    int cgroupFd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroupFd < 0) throw MakeError(env, "opening cgroup " + cgroup + " failed: " + ErrnoText(errno), errno);
    struct stat cgroupStat;
    fstat(cgroupFd, &cgroupStat);
    std::vector<bpf_link*> created;
    std::vector<std::string> createdPins;
    std::vector<bpf_link*> replaced;  // pinned links of another cgroup, detached once all are in place
    std::vector<bpf_link*> links;
    std::vector<std::pair<bpf_link*, std::string>> toPin;  // new links, pinned once all are attached
    auto undo = [&](const std::string& message, int err) {
      for (bpf_link* link : created) bpf_link__destroy(link);
      for (const std::string& pin : createdPins) unlink(pin.c_str());
      for (bpf_link* link : replaced) bpf_link__destroy(link);
      for (bpf_link* link : links) if (std::find(created.begin(), created.end(), link) == created.end()) bpf_link__destroy(link);
      close(cgroupFd);
      return MakeError(env, message, err);
    };
    for (auto& [name, program] : Programs(skel_)) {
      std::string pin = pinDir_.empty() ? "" : LinkPin(pinDir_, name);
      if (!pin.empty() && Exists(pin)) {
        bpf_link* pinned = bpf_link__open(pin.c_str());
        if (!pinned) throw undo("opening the pinned link " + pin + " failed: " + ErrnoText(errno), errno);
        bpf_link_info linkInfo = {};
        uint32_t size = sizeof linkInfo;
        if (bpf_obj_get_info_by_fd(bpf_link__fd(pinned), &linkInfo, &size) == 0 && linkInfo.type == BPF_LINK_TYPE_CGROUP &&
            linkInfo.cgroup.cgroup_id == cgroupStat.st_ino) {
          // Taking over: the hook runs the old program until this very update, then the new one.
          if (int err = bpf_link__update_program(pinned, program)) {
            bpf_link__destroy(pinned);
            throw undo("replacing the program of " + pin + " failed: " + ErrnoText(-err) + TakeLibbpfLog(), -err);
          }
          links.push_back(pinned);
          continue;
        }
        // Attached to another cgroup: it keeps its pin until every new link is attached.
        replaced.push_back(pinned);
      }
      bpf_link* link = bpf_program__attach_cgroup(program, cgroupFd);
      if (!link) {
        int err = errno;
        throw undo("attaching " + std::string(bpf_program__section_name(program)) + " to " + cgroup + " failed: " + ErrnoText(err) +
                       (err == EINVAL || err == EOPNOTSUPP ? " (the kernel lacks this hook)" : "") + TakeLibbpfLog(),
                   err);
      }
      created.push_back(link);
      links.push_back(link);
      if (!pin.empty()) toPin.emplace_back(link, pin);
    }
    for (bpf_link* link : replaced) {
      bpf_link__unpin(link);
      bpf_link__detach(link);
    }
    for (auto& [link, pin] : toPin) {
      if (int err = bpf_link__pin(link, pin.c_str())) throw undo("pinning " + pin + " failed: " + ErrnoText(-err), -err);
      createdPins.push_back(pin);
    }
    for (bpf_link* link : replaced) bpf_link__destroy(link);
    close(cgroupFd);
    DropLinks();
    links_ = std::move(links);
    return env.Undefined();
  }

  // update(map, keys, values): one batch; keys and values are packed arrays of the map's structs.
  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [map, name] = MapArg(info);
    Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
    Napi::Buffer<uint8_t> values = info[2].As<Napi::Buffer<uint8_t>>();
    uint32_t count = Count(env, keys, bpf_map__key_size(map), name);
    if (Count(env, values, bpf_map__value_size(map), name) != count) throw MakeError(env, name + ": keys and values differ in number", EINVAL);
    if (count == 0) return env.Undefined();
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    uint32_t done = count;
    if (bpf_map_update_batch(bpf_map__fd(map), keys.Data(), values.Data(), &done, &opts) != 0) {
      int err = errno;
      throw MakeError(env, "updating " + std::to_string(count) + " entries of " + name + " failed after " + std::to_string(done) + ": " + ErrnoText(err), err);
    }
    return env.Undefined();
  }

  // remove(map, keys): entries that are already gone are not an error.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [map, name] = MapArg(info);
    Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
    size_t keySize = bpf_map__key_size(map);
    uint32_t count = Count(env, keys, keySize, name);
    // The batch stops at the first missing key (ENOENT), so go on past it one key at a time.
    uint32_t done = count;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (count == 0 || bpf_map_delete_batch(bpf_map__fd(map), keys.Data(), &done, &opts) == 0) return env.Undefined();
    for (uint32_t i = done; i < count; i++) {
      if (bpf_map_delete_elem(bpf_map__fd(map), keys.Data() + i * keySize) != 0 && errno != ENOENT) {
        int err = errno;
        throw MakeError(env, "deleting from " + name + " failed: " + ErrnoText(err), err);
      }
    }
    return env.Undefined();
  }

  // dump(map) → { keys, values }: every entry, packed.
  Napi::Value DumpMap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [map, name] = MapArg(info);
    size_t keySize = bpf_map__key_size(map), valueSize = bpf_map__value_size(map);
    std::vector<uint8_t> keys, values, key(keySize), next(keySize), value(valueSize);
    int fd = bpf_map__fd(map);
    const void* previous = nullptr;
    while (bpf_map_get_next_key(fd, previous, next.data()) == 0) {
      if (bpf_map_lookup_elem(fd, next.data(), value.data()) == 0) {
        keys.insert(keys.end(), next.begin(), next.end());
        values.insert(values.end(), value.begin(), value.end());
      }
      key = next;
      previous = key.data();
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
    result.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
    return result;
  }

  Napi::Value DestroyUdpSockets(const Napi::CallbackInfo& info);

  // close(): pinned links stay attached (a new process takes them over); unpinned ones detach.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void DropLinks() {
    for (bpf_link* link : links_) {
      if (!pinDir_.empty()) bpf_link__disconnect(link);
      bpf_link__destroy(link);
    }
    links_.clear();
  }

  void Release() {
    DropLinks();
    if (skel_) socket_lb__destroy(skel_);
    skel_ = nullptr;
  }

  void Loaded(Napi::Env env) {
    if (!skel_) throw MakeError(env, "the socket LB programs are closed", EBADF);
  }

  std::pair<bpf_map*, std::string> MapArg(const Napi::CallbackInfo& info) {
    Loaded(info.Env());
    std::string name = info[0].As<Napi::String>();
    bpf_map* map = MapNamed(skel_, name);
    if (!map) throw MakeError(info.Env(), "no socket LB map named " + name, EINVAL);
    return {map, name};
  }

  static uint32_t Count(Napi::Env env, const Napi::Buffer<uint8_t>& buffer, size_t size, const std::string& name) {
    if (buffer.Length() % size != 0) throw MakeError(env, name + ": a buffer of " + std::to_string(buffer.Length()) + " bytes is not whole entries of " + std::to_string(size), EINVAL);
    return buffer.Length() / size;
  }

 public:
  socket_lb* skel_ = nullptr;
  std::string pinDir_;
  std::vector<bpf_link*> links_;
};

// ---- connected UDP sockets aimed at a removed endpoint ---------------------------------------

using Endpoint = std::pair<std::vector<uint8_t>, uint16_t>;  // 16-byte address, port (network order)

// The network namespaces of the processes in a cgroup subtree, by inode: where sockets the
// programs rewrote can live.
void CollectNetns(const std::string& cgroup, std::set<ino_t>& seen, std::vector<std::string>& paths, int depth = 0) {
  std::ifstream procs(cgroup + "/cgroup.procs");
  for (std::string pid; std::getline(procs, pid);) {
    std::string path = "/proc/" + pid + "/ns/net";
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && seen.insert(st.st_ino).second) paths.push_back(path);
  }
  if (depth > 64) return;
  DIR* dir = opendir(cgroup.c_str());
  if (!dir) return;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_type == DT_DIR && entry->d_name[0] != '.') CollectNetns(cgroup + "/" + entry->d_name, seen, paths, depth + 1);
  }
  closedir(dir);
}

struct UdpDiagRequest {
  nlmsghdr header;
  inet_diag_req_v2 request;
};

UdpDiagRequest UdpDiag(uint16_t type, uint16_t flags, int family, uint32_t states) {
  UdpDiagRequest message = {};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = type;
  message.header.nlmsg_flags = NLM_F_REQUEST | flags;
  message.request.sdiag_family = family;
  message.request.sdiag_protocol = IPPROTO_UDP;
  message.request.idiag_states = states;
  return message;
}

// In the calling thread's network namespace: destroys the connected UDP sockets whose peer is one
// of `endpoints` and whose (cookie, peer) the programs recorded in the reverse map.
int DestroyInNetns(int reverseFd, const std::set<Endpoint>& endpoints) {
  int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return 0;
  int destroyed = 0;
  std::vector<std::pair<int, inet_diag_sockid>> victims;  // family, socket
  for (int family : {AF_INET, AF_INET6}) {
    UdpDiagRequest dump = UdpDiag(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, family, 1 << 1);  // TCP_ESTABLISHED: connected UDP sockets
    if (send(nl, &dump, sizeof dump, 0) < 0) continue;
    std::vector<char> buffer(64 * 1024);
    bool done = false;
    while (!done) {
      ssize_t length = recv(nl, buffer.data(), buffer.size(), 0);
      if (length <= 0) break;
      for (nlmsghdr* header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(header, static_cast<size_t>(length));
           header = NLMSG_NEXT(header, length)) {
        if (header->nlmsg_type == NLMSG_DONE || header->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        auto* message = static_cast<inet_diag_msg*>(NLMSG_DATA(header));
        slb_reverse_key key = {};
        uint8_t* address = reinterpret_cast<uint8_t*>(key.addr);
        if (family == AF_INET) {
          address[10] = address[11] = 0xff;
          memcpy(address + 12, message->id.idiag_dst, 4);
        } else {
          memcpy(address, message->id.idiag_dst, 16);
        }
        key.port = message->id.idiag_dport;
        if (!endpoints.count({std::vector<uint8_t>(address, address + 16), key.port})) continue;
        memcpy(&key.cookie, message->id.idiag_cookie, sizeof key.cookie);
        slb_reverse reverse;
        if (bpf_map_lookup_elem(reverseFd, &key, &reverse) == 0) victims.emplace_back(family, message->id);
      }
    }
  }
  for (const auto& [victimFamily, victim] : victims) {
    UdpDiagRequest destroy = UdpDiag(SOCK_DESTROY, NLM_F_ACK, victimFamily, ~0u);
    destroy.request.id = victim;
    if (send(nl, &destroy, sizeof destroy, 0) < 0) continue;
    char ack[512];
    ssize_t length = recv(nl, ack, sizeof ack, 0);
    auto* header = reinterpret_cast<nlmsghdr*>(ack);
    if (length >= static_cast<ssize_t>(NLMSG_HDRLEN + sizeof(nlmsgerr)) && header->nlmsg_type == NLMSG_ERROR &&
        static_cast<nlmsgerr*>(NLMSG_DATA(header))->error == 0)
      destroyed++;
  }
  close(nl);
  return destroyed;
}

class DestroyWorker : public Napi::AsyncWorker {
 public:
  DestroyWorker(Napi::Env env, int reverseFd, std::string cgroup, std::set<Endpoint> endpoints)
      : Napi::AsyncWorker(env, "kubenft.socketLbDestroy"), deferred_(Napi::Promise::Deferred::New(env)), reverseFd_(reverseFd),
        cgroup_(std::move(cgroup)), endpoints_(std::move(endpoints)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // setns() changes the calling thread only: a thread of its own keeps the pool's threads where they are.
    std::thread([this] {
      std::set<ino_t> seen;
      std::vector<std::string> namespaces;
      CollectNetns(cgroup_, seen, namespaces);
      for (const std::string& path : namespaces) {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (setns(fd, CLONE_NEWNET) == 0) destroyed_ += DestroyInNetns(reverseFd_, endpoints_);
        close(fd);
      }
    }).join();
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), destroyed_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int reverseFd_;
  std::string cgroup_;
  std::set<Endpoint> endpoints_;
  int destroyed_ = 0;
};

// destroyUdpSockets(cgroupPath, endpoints) → Promise<number>; endpoints: packed slb_backend structs.
Napi::Value SocketLb::DestroyUdpSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Loaded(env);
  std::string cgroup = info[0].As<Napi::String>();
  Napi::Buffer<uint8_t> buffer = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t count = Count(env, buffer, sizeof(slb_backend), "endpoints");
  std::set<Endpoint> endpoints;
  for (uint32_t i = 0; i < count; i++) {
    slb_backend backend;
    memcpy(&backend, buffer.Data() + i * sizeof backend, sizeof backend);
    const uint8_t* address = reinterpret_cast<const uint8_t*>(backend.addr);
    endpoints.insert({std::vector<uint8_t>(address, address + 16), backend.port});
  }
  auto* worker = new DestroyWorker(env, bpf_map__fd(skel_->maps.slb_reverse), cgroup, std::move(endpoints));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---- free functions --------------------------------------------------------------------------

// netnsCookie() → bigint: the cookie of this process's network namespace (SO_NETNS_COOKIE).
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  uint64_t cookie = 0;
  socklen_t size = sizeof cookie;
  int err = fd < 0 || getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &size) != 0 ? errno : 0;
  if (fd >= 0) close(fd);
  if (err) throw MakeError(env, "reading the network namespace cookie failed: " + ErrnoText(err), err);
  return Napi::BigInt::New(env, cookie);
}

// bpffs(dir, mountIfMissing) → boolean: whether dir is on a bpf filesystem, mounting one there first
// when asked and it is not.
Napi::Value Bpffs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>();
  bool mountIfMissing = info[1].ToBoolean();
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC) return Napi::Boolean::New(env, true);
  if (!mountIfMissing) return Napi::Boolean::New(env, false);
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0) throw MakeError(env, "mounting a bpf filesystem on " + dir + " failed: " + ErrnoText(errno), errno);
  return Napi::Boolean::New(env, true);
}

// socketLbCleanup(pinDir) → number: detaches every pinned link and removes every pin there.
Napi::Value Cleanup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>();
  DIR* handle = opendir(dir.c_str());
  if (!handle) {
    if (errno == ENOENT) return Napi::Number::New(env, 0);
    throw MakeError(env, "opening " + dir + " failed: " + ErrnoText(errno), errno);
  }
  int removed = 0;
  std::string failure;
  int failureErr = 0;
  while (dirent* entry = readdir(handle)) {
    std::string name = entry->d_name;
    std::string path = dir + "/" + name;
    if (name.rfind("link_", 0) == 0) {
      int fd = bpf_obj_get(path.c_str());
      if (fd >= 0) {
        bpf_link_detach(fd);
        close(fd);
      }
    } else if (name.rfind("map_", 0) != 0) {
      continue;
    }
    if (unlink(path.c_str()) == 0) removed++;
    else if (failure.empty()) failure = path, failureErr = errno;
  }
  closedir(handle);
  if (!failure.empty()) throw MakeError(env, "removing " + failure + " failed: " + ErrnoText(failureErr), failureErr);
  rmdir(dir.c_str());
  return Napi::Number::New(env, removed);
}

}  // namespace

Napi::Object SocketLbExports(Napi::Env env) {
  Napi::Object exports = Napi::Object::New(env);
  exports.Set("SocketLb", SocketLb::Define(env));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie, "netnsCookie"));
  exports.Set("bpffs", Napi::Function::New(env, Bpffs, "bpffs"));
  exports.Set("cleanup", Napi::Function::New(env, Cleanup, "cleanup"));
  return exports;
}

}  // namespace knft
