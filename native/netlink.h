// Small helpers shared by the commit and dump code: owning wrappers
// for libmnl/libnftnl handles and errno formatting.
#pragma once

#include <napi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>

namespace knft {

// Owning pointers, so every early return (decoder error, socket error)
// releases what was allocated so far.
template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { if (p) F(p); }
};
inline void FreeSocket(mnl_socket* s) { mnl_socket_close(s); }
inline void FreeTable(nftnl_table* p) { nftnl_table_free(p); }
inline void FreeChain(nftnl_chain* p) { nftnl_chain_free(p); }
inline void FreeRule(nftnl_rule* p) { nftnl_rule_free(p); }
inline void FreeSet(nftnl_set* p) { nftnl_set_free(p); }
inline void FreeElem(nftnl_set_elem* p) { nftnl_set_elem_free(p); }
inline void FreeExpr(nftnl_expr* p) { nftnl_expr_free(p); }
inline void FreeIter(nftnl_set_elems_iter* p) { nftnl_set_elems_iter_destroy(p); }

using SocketPtr = std::unique_ptr<mnl_socket, Deleter<mnl_socket, FreeSocket>>;
using TablePtr = std::unique_ptr<nftnl_table, Deleter<nftnl_table, FreeTable>>;
using ChainPtr = std::unique_ptr<nftnl_chain, Deleter<nftnl_chain, FreeChain>>;
using RulePtr = std::unique_ptr<nftnl_rule, Deleter<nftnl_rule, FreeRule>>;
using SetPtr = std::unique_ptr<nftnl_set, Deleter<nftnl_set, FreeSet>>;
using ElemPtr = std::unique_ptr<nftnl_set_elem, Deleter<nftnl_set_elem, FreeElem>>;
using ExprPtr = std::unique_ptr<nftnl_expr, Deleter<nftnl_expr, FreeExpr>>;
using IterPtr = std::unique_ptr<nftnl_set_elems_iter, Deleter<nftnl_set_elems_iter, FreeIter>>;

// libnftnl allocators return NULL only when out of memory.
template <typename T>
T* Check(T* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

// libnftnl getters return NULL for attributes the kernel did not send.
inline std::string Str(const char* s) { return s ? s : ""; }

// A failure carrying an errno, thrown inside worker threads and turned into a
// JS Error (with errno/code properties) back on the JS thread.
struct SysError {
  int err;
  std::string message;
};

// "ENOENT" for ENOENT; "E<n>" for numbers glibc does not know.
std::string ErrnoName(int err);
std::string ErrnoText(int err);

// Builds `new Error(message)` with errno/code properties (when err != 0).
Napi::Error MakeError(Napi::Env env, const std::string& message, int err);

// Opens a NETLINK_NETFILTER socket bound to an automatic port id.
// Throws SysError.
SocketPtr OpenSocket();

// Sets an integer socket option, preferring the privileged *FORCE variant
// (which ignores net.core.[rw]mem_max) and falling back to the capped one.
void SetBuffer(mnl_socket* nl, int forceOpt, int opt, size_t bytes);

inline double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Entry points, one per exported function.
Napi::Object Attributes(Napi::Env env);
Napi::Value Commit(const Napi::CallbackInfo& info);
// captureBatches(on): from now on keep a copy of every batch commit() sends;
// takeCapturedBatches(): those copies (Buffers, in order), forgotten here.
Napi::Value CaptureBatches(const Napi::CallbackInfo& info);
Napi::Value TakeCapturedBatches(const Napi::CallbackInfo& info);
Napi::Value Dump(const Napi::CallbackInfo& info);
Napi::Value Generation(const Napi::CallbackInfo& info);
Napi::Value Tables(const Napi::CallbackInfo& info);
// The socket LB's class and functions (socket_lb.cc).
Napi::Object SocketLbExports(Napi::Env env);

}  // namespace knft
