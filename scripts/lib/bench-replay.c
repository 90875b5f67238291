// The kernel's floor for a ruleset: sends netlink batches captured from kubenft's addon
// (captureBatches) exactly as they were sent, one sendmsg() each, and reads the kernel's answers,
// with nothing else in the way (no planning, no encoding, no JavaScript). The bench compiles it
// with cc and runs it in a fresh network namespace.
//
//   bench-replay FILE    FILE: for each batch, its length (u32, host order) then its bytes
//
// Prints {"batches":N,"bytes":B,"ms":T} on stdout, T being the time from the first send to the
// last answer; exits 1, naming the batch, if the kernel refused any message.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void set_buffer(int fd, int force, int plain, size_t bytes) {
  int value = bytes > INT32_MAX / 2 ? INT32_MAX / 2 : (int)bytes;
  if (setsockopt(fd, SOL_SOCKET, force, &value, sizeof(value)) != 0) setsockopt(fd, SOL_SOCKET, plain, &value, sizeof(value));
}

static char *read_file(const char *path, size_t *size) {
  FILE *file = fopen(path, "rb");
  if (!file) return NULL;
  fseek(file, 0, SEEK_END);
  long length = ftell(file);
  fseek(file, 0, SEEK_SET);
  char *data = malloc(length > 0 ? (size_t)length : 1);
  if (data && fread(data, 1, (size_t)length, file) != (size_t)length) {
    free(data);
    data = NULL;
  }
  fclose(file);
  *size = (size_t)length;
  return data;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE\n", argv[0]);
    return 2;
  }
  size_t size;
  char *data = read_file(argv[1], &size);
  if (!data) {
    fprintf(stderr, "cannot read %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  size_t largest = 0, batches = 0;
  for (size_t offset = 0; offset + 4 <= size;) {
    uint32_t length;
    memcpy(&length, data + offset, 4);
    if (length > largest) largest = length;
    offset += 4 + length;
    batches++;
  }

  struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("netlink socket");
    return 1;
  }
  int fd = mnl_socket_get_fd(nl);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, largest + 65536);
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, 8 << 20);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  static char answers[256 * 1024];

  double started = now_ms();
  size_t index = 0;
  for (size_t offset = 0; offset + 4 <= size; index++) {
    uint32_t length;
    memcpy(&length, data + offset, 4);
    if (mnl_socket_sendto(nl, data + offset + 4, length) < 0) {
      fprintf(stderr, "batch %zu: sendmsg failed: %s\n", index, strerror(errno));
      return 1;
    }
    offset += 4 + length;
    // nfnetlink processes a batch inside sendmsg(): every answer is queued by now.
    int acked = 0;
    for (;;) {
      ssize_t received = recv(fd, answers, sizeof(answers), MSG_DONTWAIT);
      if (received < 0) {
        if (errno == EINTR || errno == ENOBUFS) continue;
        break;
      }
      int left = (int)received;
      for (struct nlmsghdr *nlh = (struct nlmsghdr *)answers; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        struct nlmsgerr *error = mnl_nlmsg_get_payload(nlh);
        if (error->error != 0) {
          fprintf(stderr, "batch %zu: the kernel refused message seq %u: %s\n", index, nlh->nlmsg_seq, strerror(-error->error));
          return 1;
        }
        acked = 1;
      }
    }
    if (!acked) {
      fprintf(stderr, "batch %zu: no acknowledgement from the kernel\n", index);
      return 1;
    }
  }
  printf("{\"batches\":%zu,\"bytes\":%zu,\"ms\":%.3f}\n", batches, size, now_ms() - started);
  mnl_socket_close(nl);
  free(data);
  return 0;
}
