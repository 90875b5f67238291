#include "netlink.h"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>

namespace knft {

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  return name ? name : "E" + std::to_string(err);
}

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r: thread-safe, returns a pointer that may not be buf.
  return strerror_r(err, buf, sizeof(buf));
}

Napi::Error MakeError(Napi::Env env, const std::string& message, int err) {
  Napi::Error e = Napi::Error::New(env, message);
  if (err != 0) {
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("code", Napi::String::New(env, ErrnoName(err)));
  }
  return e;
}

SocketPtr OpenSocket() {
  SocketPtr nl(mnl_socket_open(NETLINK_NETFILTER));
  if (!nl) throw SysError{errno, "cannot open netlink socket: " + ErrnoText(errno)};
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    throw SysError{errno, "cannot bind netlink socket: " + ErrnoText(errno)};
  return nl;
}

void SetBuffer(mnl_socket* nl, int forceOpt, int opt, size_t bytes) {
  // The kernel doubles the value and stores it in an int.
  int val = bytes > INT32_MAX / 2 ? INT32_MAX / 2 : static_cast<int>(bytes);
  int fd = mnl_socket_get_fd(nl);
  if (setsockopt(fd, SOL_SOCKET, forceOpt, &val, sizeof(val)) == 0) return;
  setsockopt(fd, SOL_SOCKET, opt, &val, sizeof(val));
}

}  // namespace knft
