{
  "targets": [
    {
      "target_name": "planetd_tun",
      "sources": ["src/tun/native/tun.c", "src/tun/native/notify.c", "src/tun/native/sockopt.c", "src/tun/native/tun_io.c", "src/tun/native/offload.c", "src/tun/native/offload_js.c", "src/tun/native/trim.c", "src/tun/native/stream_read.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "planetd_udp",
      "sources": ["src/tun/native/udp.c", "src/tun/native/udp_io.c", "src/tun/native/udp_send.c", "src/tun/native/udp_recv.c", "src/tun/native/udp_err.c", "src/tun/native/session_chacha.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "planetd_session",
      "sources": ["src/tun/native/session_aead.c", "src/tun/native/session_chacha.c"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-ldl"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
