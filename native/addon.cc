// kubenft_native: a thin, generic bridge between TypeScript and nf_tables
// netlink (libnftnl/libmnl). It knows nothing about Kubernetes.
#include "netlink.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("attributes", knft::Attributes(env));
  exports.Set("commit", Napi::Function::New(env, knft::Commit, "commit"));
  exports.Set("dump", Napi::Function::New(env, knft::Dump, "dump"));
  exports.Set("generation", Napi::Function::New(env, knft::Generation, "generation"));
  exports.Set("monitor", Napi::Function::New(env, knft::Monitor, "monitor"));
  return exports;
}

}  // namespace

NODE_API_MODULE(kubenft_native, Init)
