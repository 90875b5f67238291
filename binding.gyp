{
  "targets": [
    {
      "target_name": "kubenft_native",
      "sources": [
        "native/addon.cc",
        "native/attrs.cc",
        "native/commit.cc",
        "native/dump.cc",
        "native/monitor.cc",
        "native/netlink.cc"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "<!@(pkg-config --cflags-only-I libnftnl libmnl | sed s/-I//g)"
      ],
      "libraries": [
        "<!@(pkg-config --libs libnftnl libmnl)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-std=gnu++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    }
  ]
}
