// Map layouts shared by the socket LB programs (socket_lb.bpf.c) and the addon. Addresses are
// 16 bytes, IPv4 as ::ffff:a.b.c.d, so one map serves both families and a v4-mapped connect6 takes
// the IPv4 path. Addresses and ports are in network byte order, as the sockaddr carries them.
#ifndef KUBENFT_SOCKET_LB_H
#define KUBENFT_SOCKET_LB_H

#include <linux/types.h>

// A frontend: address, port, IPPROTO_TCP or IPPROTO_UDP.
struct slb_service_key {
  __u32 addr[4];
  __u16 port;
  __u8 proto;
  __u8 pad;
};

// Its endpoints are slots {id, base} .. {id, base + count - 1}. A change writes the new endpoints
// at another base, then swaps this value, then deletes the old slots: no lookup sees a half list.
struct slb_service {
  __u32 slot_base;
  __u32 count;
  __u32 affinity_timeout_s;  // 0: no session affinity
  __u32 id;
};

struct slb_slot_key {
  __u32 service_id;
  __u32 index;
};

struct slb_backend {
  __u32 addr[4];
  __u16 port;
  __u16 pad;
};

// What a socket was sent to (cookie, endpoint) → the frontend it asked for, to undo the rewrite in
// recvmsg and getpeername.
struct slb_reverse_key {
  __u64 cookie;
  __u32 addr[4];
  __u16 port;
  __u16 pad;
  __u32 pad2;
};

struct slb_reverse {
  __u32 addr[4];
  __u16 port;
  __u8 proto;
  __u8 pad;
  __u32 service_id;
};

// ClientIP affinity: there is no client address at connect time, so the client's network
// namespace stands for it (as in Cilium).
struct slb_affinity_key {
  __u64 netns_cookie;
  __u32 service_id;
  __u32 pad;
};

struct slb_affinity {
  struct slb_backend backend;
  __u64 last_used_ns;
};

#endif
