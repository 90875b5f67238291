// monitor(callback): follow nftables change notifications on a background
// thread and report one event per committed generation.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "netlink.h"

namespace knft {
namespace {

// Notifications are not flow controlled: a burst (one per set element) that
// outruns the reader is dropped and reported as an overrun.
constexpr size_t kMonitorRecvBuffer = 16 << 20;

// Every nftables object message carries its table name as attribute 1
// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
// NFTA_SET_ELEM_LIST_TABLE, ...).
constexpr uint16_t kTableAttr = 1;
static_assert(NFTA_TABLE_NAME == kTableAttr && NFTA_CHAIN_TABLE == kTableAttr && NFTA_RULE_TABLE == kTableAttr &&
                  NFTA_SET_TABLE == kTableAttr && NFTA_SET_ELEM_LIST_TABLE == kTableAttr,
              "table attribute numbering");

struct Event {
  enum { kGeneration, kOverrun, kError } kind = kGeneration;
  uint32_t generation = 0;
  uint32_t pid = 0;
  std::vector<std::string> tables;
  std::string error;
};

// Attributes 0..3 after the nfgenmsg header, enough for the gen id/pid and
// the table name.
struct Attrs {
  const nlattr* tb[4] = {};
};

Attrs ParseAttrs(const nlmsghdr* nlh) {
  Attrs a;
  mnl_attr_parse(
      nlh, sizeof(nfgenmsg),
      [](const nlattr* attr, void* data) {
        uint16_t type = mnl_attr_get_type(attr);
        if (type < 4) static_cast<Attrs*>(data)->tb[type] = attr;
        return MNL_CB_OK;
      },
      &a);
  return a;
}

uint32_t BeU32(const nlattr* a) {
  return a && mnl_attr_validate(a, MNL_TYPE_U32) == 0 ? ntohl(mnl_attr_get_u32(a)) : 0;
}

class Watcher {
 public:
  Watcher(Napi::Env env, Napi::Function callback) : nl_(OpenSocket()) {
    unsigned int group = NFNLGRP_NFTABLES;
    if (mnl_socket_setsockopt(nl_.get(), NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0)
      throw SysError{errno, "cannot join NFNLGRP_NFTABLES: " + ErrnoText(errno)};
    SetBuffer(nl_.get(), SO_RCVBUFFORCE, SO_RCVBUF, kMonitorRecvBuffer);
    stopFd_ = eventfd(0, EFD_CLOEXEC);
    if (stopFd_ < 0) throw SysError{errno, "eventfd: " + ErrnoText(errno)};
    tsfn_ = Napi::ThreadSafeFunction::New(env, callback, "kubenft.monitor", 0, 1);
    thread_ = std::thread([this] { Loop(); });
  }

  ~Watcher() { Close(); }

  // Runs on the JS thread. Joining is quick: the thread only ever blocks in
  // poll(), which the eventfd wakes.
  void Close() {
    if (closed_) return;
    closed_ = true;
    uint64_t one = 1;
    if (write(stopFd_, &one, sizeof(one)) < 0) { /* cannot fail for a fresh eventfd */ }
    thread_.join();
    tsfn_.Release();
    close(stopFd_);
    nl_.reset();
    handle_.Reset();  // lets the handle (and this monitor) be collected
  }

  // While open, the handle is strongly referenced, like a timer.
  void Hold(Napi::Object handle) { handle_ = Napi::Persistent(handle); }

 private:
  void Loop() {
    int fd = mnl_socket_get_fd(nl_.get());
    std::vector<char> rx(MNL_SOCKET_BUFFER_SIZE * 32);
    std::set<std::string> tables;  // touched since the last NEWGEN
    pollfd fds[2] = {{fd, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    for (;;) {
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return Fail("poll: " + ErrnoText(errno));
      }
      if (fds[1].revents) return;
      ssize_t n = recv(fd, rx.data(), rx.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        if (errno == ENOBUFS) {
          Event ev;
          ev.kind = Event::kOverrun;
          Emit(std::move(ev));
          continue;
        }
        return Fail("reading notifications: " + ErrnoText(errno));
      }
      int len = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, len);
           nlh = mnl_nlmsg_next(nlh, &len)) {
        if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES) continue;
        if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) continue;
        Attrs a = ParseAttrs(nlh);
        if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWGEN) {
          Event ev;
          ev.generation = BeU32(a.tb[NFTA_GEN_ID]);
          ev.pid = BeU32(a.tb[NFTA_GEN_PROC_PID]);
          ev.tables.assign(tables.begin(), tables.end());
          tables.clear();
          Emit(std::move(ev));
        } else if (const nlattr* t = a.tb[kTableAttr]; t && mnl_attr_validate(t, MNL_TYPE_NUL_STRING) == 0) {
          tables.insert(mnl_attr_get_str(t));
        }
      }
    }
  }

  void Fail(std::string message) {
    Event ev;
    ev.kind = Event::kError;
    ev.error = std::move(message);
    Emit(std::move(ev));
  }

  void Emit(Event ev) {
    tsfn_.NonBlockingCall([ev = std::move(ev)](Napi::Env env, Napi::Function callback) {
      Napi::Object o = Napi::Object::New(env);
      switch (ev.kind) {
        case Event::kGeneration: {
          o.Set("generation", Napi::Number::New(env, ev.generation));
          o.Set("pid", Napi::Number::New(env, ev.pid));
          Napi::Array tables = Napi::Array::New(env, ev.tables.size());
          for (size_t i = 0; i < ev.tables.size(); i++) tables.Set(i, ev.tables[i]);
          o.Set("tables", tables);
          break;
        }
        case Event::kOverrun: o.Set("overrun", true); break;
        case Event::kError: o.Set("error", ev.error); break;
      }
      try {
        callback.Call({o});
      } catch (const Napi::Error& e) {
        // There is no JS caller to hand the error to: report it like an
        // exception thrown from a timer callback.
        napi_fatal_exception(env, e.Value());
      }
    });
  }

  SocketPtr nl_;
  int stopFd_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction tsfn_;
  Napi::ObjectReference handle_;
  bool closed_ = false;
};

}  // namespace

Napi::Value Monitor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "monitor(callback)");
  std::shared_ptr<Watcher> watcher;
  try {
    watcher = std::make_shared<Watcher>(env, info[0].As<Napi::Function>());
  } catch (const SysError& e) {
    throw MakeError(env, e.message, e.err);
  }
  Napi::Object handle = Napi::Object::New(env);
  // The close function owns the watcher, so it stays valid for as long as
  // anyone can call close().
  handle.Set("close", Napi::Function::New(
                          env, [watcher](const Napi::CallbackInfo&) { watcher->Close(); }, "close"));
  watcher->Hold(handle);
  return handle;
}

}  // namespace knft
