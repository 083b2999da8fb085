{
  "targets": [
    {
      "target_name": "planetd_tun",
      "sources": ["src/tun/native/tun.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
