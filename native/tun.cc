// openTun(name): a non-persistent TUN device, held open by this process. The
// kernel deletes it, with its addresses and their local routes, when the last
// descriptor closes: when the process exits, however it exits (even SIGKILL).
// An address on it is local exactly as long as the process lives, which
// nftables can test per packet (fib daddr type local) with no agent involved.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "netlink.h"

namespace knft {

Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "openTun(name): name must be a string");
  std::string name = info[0].As<Napi::String>();
  if (name.empty() || name.size() >= IFNAMSIZ) throw Napi::TypeError::New(env, "openTun(name): name must be 1-15 bytes");
  // CLOEXEC: a child process (ip, nft) must not keep the device alive after we die.
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) throw MakeError(env, "cannot open /dev/net/tun: " + ErrnoText(errno), errno);
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw MakeError(env, "cannot create TUN device " + name + ": " + ErrnoText(err), err);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace knft
