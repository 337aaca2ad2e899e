/* privileged_get HOST PORT PATH: an HTTP/1.0 GET from a local port below 1024
 * (the first free one from 600 up), body to stdout; exit 0 on HTTP 200.
 * boot_pxe.sh copies it, linked statically, into the busybox master, where
 * busybox's nc cannot choose its source port: root on the node uses it to
 * fetch the node's key like rootfs-fuse does, and an unprivileged user to
 * show that binding such a port is refused. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: privileged_get HOST PORT PATH\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
  int port = 600;
  for (; port < 1024; port++) {
    local.sin_port = htons((unsigned short)port);
    if (bind(fd, (struct sockaddr*)&local, sizeof local) == 0) break;
    if (errno != EADDRINUSE) {
      fprintf(stderr, "privileged_get: bind port %d: %s\n", port, strerror(errno));
      return 1;
    }
  }
  struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &peer.sin_addr) != 1 ||
      connect(fd, (struct sockaddr*)&peer, sizeof peer) != 0) {
    fprintf(stderr, "privileged_get: connect %s:%s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", argv[3], argv[1]);
  if (n <= 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) return 1;
  static char buf[65536];
  size_t have = 0;
  ssize_t got;
  while (have < sizeof buf - 1 && (got = read(fd, buf + have, sizeof buf - 1 - have)) > 0) have += (size_t)got;
  buf[have] = '\0';
  char* body = strstr(buf, "\r\n\r\n");
  if (body == NULL) return 1;
  fputs(body + 4, stdout);
  return strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0 ? 0 : 1;
}
