// kubenft_native: a thin, generic bridge between TypeScript and nf_tables
// netlink (libnftnl/libmnl). It knows nothing about Kubernetes.
#include "netlink.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace {

// A commit's batch (libnftnl objects, the netlink buffer) is built on a
// libuv worker thread, in a malloc arena of its own; glibc keeps what it
// freed there mapped, so the agent's RSS stayed near the sync's peak. Returns
// whether anything was released (always false without glibc).
Napi::Value TrimNativeHeap(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("attributes", knft::Attributes(env));
  exports.Set("commit", Napi::Function::New(env, knft::Commit, "commit"));
  exports.Set("dump", Napi::Function::New(env, knft::Dump, "dump"));
  exports.Set("generation", Napi::Function::New(env, knft::Generation, "generation"));
  exports.Set("monitor", Napi::Function::New(env, knft::Monitor, "monitor"));
  exports.Set("trimNativeHeap", Napi::Function::New(env, TrimNativeHeap, "trimNativeHeap"));
  return exports;
}

}  // namespace

NODE_API_MODULE(kubenft_native, Init)
