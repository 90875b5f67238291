// kubenft_native: a thin, generic bridge between TypeScript and nf_tables
// netlink (libnftnl/libmnl). It knows nothing about Kubernetes.
#include "netlink.h"

#include <v8.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace knft {
Napi::Value AnswerTable(const Napi::CallbackInfo& info);  // udp_answers.cc
Napi::Value UdpAnswers(const Napi::CallbackInfo& info);  // udp_answers.cc
Napi::Value OpenTun(const Napi::CallbackInfo& info);     // tun.cc
}

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

// After a full sync the agent drops a ruleset that at 100k services filled
// hundreds of MB of the V8 heap; an ordinary collection frees the objects but
// leaves the pages fragmented and mapped. V8's low-memory path collects with
// compaction and hands the emptied pages back. N-API has no such call, hence
// V8's own API (the addon is always built against the running node's headers).
Napi::Value CompactJsHeap(const Napi::CallbackInfo& info) {
  v8::Isolate::GetCurrent()->LowMemoryNotification();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef __GLIBC__
  // A commit copies its transaction and builds its batch (tens of MB at 100k services) on
  // whichever libuv thread runs it. Once one such block is freed, glibc's adaptive threshold
  // serves the next ones from that thread's arena, where ~50 MB stayed resident after a staged
  // 100k-service load even after malloc_trim. A fixed threshold (which also turns the adaptive
  // one off, process-wide) keeps blocks of 1 MiB and more in mappings of their own, returned
  // to the system when freed: 296 -> 231 MB RSS after that load.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  exports.Set("attributes", knft::Attributes(env));
  exports.Set("commit", Napi::Function::New(env, knft::Commit, "commit"));
  exports.Set("captureBatches", Napi::Function::New(env, knft::CaptureBatches, "captureBatches"));
  exports.Set("takeCapturedBatches", Napi::Function::New(env, knft::TakeCapturedBatches, "takeCapturedBatches"));
  exports.Set("dump", Napi::Function::New(env, knft::Dump, "dump"));
  exports.Set("generation", Napi::Function::New(env, knft::Generation, "generation"));
  exports.Set("tables", Napi::Function::New(env, knft::Tables, "tables"));
  exports.Set("trimNativeHeap", Napi::Function::New(env, TrimNativeHeap, "trimNativeHeap"));
  exports.Set("compactJsHeap", Napi::Function::New(env, CompactJsHeap, "compactJsHeap"));
  exports.Set("socketLb", knft::SocketLbExports(env));
  exports.Set("answerTable", Napi::Function::New(env, knft::AnswerTable, "answerTable"));
  exports.Set("udpAnswers", Napi::Function::New(env, knft::UdpAnswers, "udpAnswers"));
  exports.Set("openTun", Napi::Function::New(env, knft::OpenTun, "openTun"));
  return exports;
}

}  // namespace

NODE_API_MODULE(kubenft_native, Init)
