{
  "targets": [
    {
      "target_name": "kubenft_native",
      "sources": [
        "native/addon.cc",
        "native/attrs.cc",
        "native/commit.cc",
        "native/dump.cc",
        "native/netlink.cc",
        "native/socket_lb.cc",
        "native/tun.cc",
        "native/udp_answers.cc"
      ],
      "actions": [
        {
          "action_name": "socket_lb_skeleton",
          "inputs": ["native/bpf/socket_lb.bpf.c", "native/bpf/socket_lb.h", "native/bpf/skeleton.sh"],
          "outputs": ["<(INTERMEDIATE_DIR)/socket_lb.skel.h"],
          "action": ["sh", "native/bpf/skeleton.sh", "native/bpf/socket_lb.bpf.c", "<(INTERMEDIATE_DIR)/socket_lb.skel.h"]
        }
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "<!@(pkg-config --cflags-only-I libnftnl libmnl libbpf | sed s/-I//g)",
        "<(INTERMEDIATE_DIR)"
      ],
      "libraries": [
        "<!@(pkg-config --libs libnftnl libmnl libbpf)"
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
