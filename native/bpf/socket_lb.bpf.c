// Socket-level load balancing: cgroup sock_addr programs that rewrite a frontend address to one of
// its endpoints when a process calls connect() or sendmsg(), and restore the frontend address in
// recvmsg() and getpeername(). Generic: which frontends and endpoints exist is user space's.
// They never refuse: an unknown frontend, or one without endpoints, passes untouched.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "socket_lb.h"

// Set before load. host_only: rewrite only for sockets of the network namespace whose cookie is
// host_netns_cookie (sidecar meshes want the packet-level path inside pods).
const volatile __u8 host_only = 0;
const volatile __u64 host_netns_cookie = 0;

// How far an affinity lookup searches for a remembered endpoint whose slot moved.
#define AFFINITY_SEARCH_LIMIT 256

// Sized for 100,000 services with several ports and a change in flight; allocated on use
// (BPF_F_NO_PREALLOC), so a small cluster does not pay for the large limits.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 262144);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct slb_service_key);
  __type(value, struct slb_service);
} slb_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1048576);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct slb_slot_key);
  __type(value, struct slb_backend);
} slb_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct slb_reverse_key);
  __type(value, struct slb_reverse);
} slb_reverse SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct slb_affinity_key);
  __type(value, struct slb_affinity);
} slb_affinity SEC(".maps");

static __always_inline void read_address(struct bpf_sock_addr *ctx, int v6, __u32 addr[4]) {
  if (v6) {
    addr[0] = ctx->user_ip6[0];
    addr[1] = ctx->user_ip6[1];
    addr[2] = ctx->user_ip6[2];
    addr[3] = ctx->user_ip6[3];
  } else {
    addr[0] = 0;
    addr[1] = 0;
    addr[2] = bpf_htonl(0xffff);
    addr[3] = ctx->user_ip4;
  }
}

static __always_inline void write_address(struct bpf_sock_addr *ctx, int v6, const __u32 addr[4], __u16 port) {
  if (v6) {
    ctx->user_ip6[0] = addr[0];
    ctx->user_ip6[1] = addr[1];
    ctx->user_ip6[2] = addr[2];
    ctx->user_ip6[3] = addr[3];
  } else {
    ctx->user_ip4 = addr[3];
  }
  ctx->user_port = port;
}

static __always_inline int same_backend(const struct slb_backend *a, const struct slb_backend *b) {
  return a->addr[0] == b->addr[0] && a->addr[1] == b->addr[1] && a->addr[2] == b->addr[2] && a->addr[3] == b->addr[3] &&
         a->port == b->port;
}

// The remembered endpoint if it is still one of the service's, wherever its slot now is.
static __always_inline struct slb_backend *affinity_backend(const struct slb_service *service, const struct slb_affinity *affinity) {
  struct slb_slot_key key = {.service_id = service->id};
  for (__u32 i = 0; i < AFFINITY_SEARCH_LIMIT && i < service->count; i++) {
    key.index = service->slot_base + i;
    struct slb_backend *backend = bpf_map_lookup_elem(&slb_slots, &key);
    if (backend && same_backend(backend, &affinity->backend)) return backend;
  }
  return 0;
}

static __always_inline struct slb_backend *choose(struct bpf_sock_addr *ctx, const struct slb_service *service, __u64 cookie) {
  struct slb_affinity_key affinity_key = {};
  __u64 now = 0;
  if (service->affinity_timeout_s) {
    affinity_key.netns_cookie = bpf_get_netns_cookie(ctx);
    affinity_key.service_id = service->id;
    now = bpf_ktime_get_ns();
    struct slb_affinity *affinity = bpf_map_lookup_elem(&slb_affinity, &affinity_key);
    if (affinity && now - affinity->last_used_ns < (__u64)service->affinity_timeout_s * 1000000000ULL) {
      struct slb_backend *backend = affinity_backend(service, affinity);
      if (backend) {
        affinity->last_used_ns = now;
        return backend;
      }
    }
  }
  // UDP: one socket keeps one endpoint (its cookie picks it), so its datagrams stay one flow.
  __u32 pick = ctx->protocol == IPPROTO_UDP ? (__u32)(cookie ^ (cookie >> 32)) : bpf_get_prandom_u32();
  struct slb_slot_key key = {.service_id = service->id, .index = service->slot_base + pick % service->count};
  struct slb_backend *backend = bpf_map_lookup_elem(&slb_slots, &key);
  if (backend && service->affinity_timeout_s) {
    struct slb_affinity affinity = {.backend = *backend, .last_used_ns = now};
    bpf_map_update_elem(&slb_affinity, &affinity_key, &affinity, BPF_ANY);
  }
  return backend;
}

static __always_inline int balance(struct bpf_sock_addr *ctx, int v6) {
  if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP) return 1;
  if (host_only && bpf_get_netns_cookie(ctx) != host_netns_cookie) return 1;
  struct slb_service_key service_key = {.port = (__u16)ctx->user_port, .proto = (__u8)ctx->protocol};
  read_address(ctx, v6, service_key.addr);
  struct slb_service *service = bpf_map_lookup_elem(&slb_services, &service_key);
  if (!service || service->count == 0) return 1;
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct slb_backend *backend = choose(ctx, service, cookie);
  if (!backend) return 1;
  struct slb_reverse_key reverse_key = {.cookie = cookie, .port = backend->port};
  __builtin_memcpy(reverse_key.addr, backend->addr, sizeof(reverse_key.addr));
  struct slb_reverse reverse = {.port = service_key.port, .proto = service_key.proto, .service_id = service->id};
  __builtin_memcpy(reverse.addr, service_key.addr, sizeof(reverse.addr));
  // Without its reverse entry the socket would see the endpoint's address: still a working socket.
  bpf_map_update_elem(&slb_reverse, &reverse_key, &reverse, BPF_ANY);
  write_address(ctx, v6, backend->addr, backend->port);
  return 1;
}

static __always_inline int restore(struct bpf_sock_addr *ctx, int v6) {
  struct slb_reverse_key reverse_key = {.cookie = bpf_get_socket_cookie(ctx), .port = (__u16)ctx->user_port};
  read_address(ctx, v6, reverse_key.addr);
  struct slb_reverse *reverse = bpf_map_lookup_elem(&slb_reverse, &reverse_key);
  if (!reverse) return 1;
  struct slb_service_key service_key = {.port = reverse->port, .proto = reverse->proto};
  __builtin_memcpy(service_key.addr, reverse->addr, sizeof(service_key.addr));
  struct slb_service *service = bpf_map_lookup_elem(&slb_services, &service_key);
  // The frontend is gone (or is another service now): the endpoint's own address is the truth.
  if (!service || service->id != reverse->service_id) {
    bpf_map_delete_elem(&slb_reverse, &reverse_key);
    return 1;
  }
  write_address(ctx, v6, reverse->addr, reverse->port);
  return 1;
}

SEC("cgroup/connect4") int slb_connect4(struct bpf_sock_addr *ctx) { return balance(ctx, 0); }
SEC("cgroup/connect6") int slb_connect6(struct bpf_sock_addr *ctx) { return balance(ctx, 1); }
SEC("cgroup/sendmsg4") int slb_sendmsg4(struct bpf_sock_addr *ctx) { return balance(ctx, 0); }
SEC("cgroup/sendmsg6") int slb_sendmsg6(struct bpf_sock_addr *ctx) { return balance(ctx, 1); }
SEC("cgroup/recvmsg4") int slb_recvmsg4(struct bpf_sock_addr *ctx) { return restore(ctx, 0); }
SEC("cgroup/recvmsg6") int slb_recvmsg6(struct bpf_sock_addr *ctx) { return restore(ctx, 1); }
SEC("cgroup/getpeername4") int slb_getpeername4(struct bpf_sock_addr *ctx) { return restore(ctx, 0); }
SEC("cgroup/getpeername6") int slb_getpeername6(struct bpf_sock_addr *ctx) { return restore(ctx, 1); }

// No GPL-only helper is used.
char LICENSE[] SEC("license") = "Apache-2.0";
