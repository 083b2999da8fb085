// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ("READY=1", "RELOADING=1", ...).
// Node's dgram has no AF_UNIX datagrams, and a spawned `systemd-notify` is not the unit's main
// process, so the daemon sends it itself. Abstract sockets ("@name") are supported as systemd uses them.
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

// notify(socketPath, message) -> 0 or an errno; nothing is thrown, readiness is best effort.
napi_value planetd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char msg[512];
  size_t path_len = 0, msg_len = 0;
  int err = EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2 &&
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) == napi_ok &&
      napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &msg_len) == napi_ok && path_len > 0 &&
      path_len < sizeof path - 1 && (path[0] == '/' || path[0] == '@')) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, path_len);
    if (path[0] == '@') addr.sun_path[0] = '\0';
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
    } else {
      err = sendto(fd, msg, msg_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len) < 0 ? errno : 0;
      close(fd);
    }
  }
  napi_create_int32(env, err, &result);
  return result;
}
