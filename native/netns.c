/*
 * Interface set-up inside a private network namespace, so that scenarios do
 * not need iproute2's `ip` (absent from minimal images where `unshare` works):
 *
 *   linkUp(name)                       SIOCGIFFLAGS + SIOCSIFFLAGS(IFF_UP)
 *   addAddress(name, address, prefix)  RTM_NEWADDR over NETLINK_ROUTE, as
 *                                      `ip addr add ADDRESS/PREFIX dev NAME`
 *                                      (IPv6 with nodad, so it is usable at once)
 *
 * Both return 0, or { errno, syscall } for a failed syscall or a kernel NACK
 * (syscall "RTM_NEWADDR" then). Only wrong argument types throw.
 */
#include "addon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int read_ifname(napi_env env, napi_value v, char name[IF_NAMESIZE]) {
  size_t len = 0;
  if (!expect_type(env, v, napi_string, "interface name must be a string")) return 0;
  NAPI_OK(env, napi_get_value_string_utf8(env, v, name, IF_NAMESIZE, &len));
  if (len == 0 || len >= IF_NAMESIZE - 1) return throw_range(env, "interface name must have 1 to 14 characters");
  return 1;
}

static napi_value zero(napi_env env) {
  napi_value v;
  if (napi_create_int32(env, 0, &v) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return v;
}

/* linkUp(name): 0 or { errno, syscall }. */
napi_value js_link_up(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[IF_NAMESIZE];
  struct ifreq ifr;
  const char *failed = NULL;
  int err = 0;
  if (!get_args(env, info, 1, argv) || !read_ifname(env, argv[0], name)) return NULL;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_object(env, errno, "socket", NULL);
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name) + 1);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
    failed = "ioctl SIOCGIFFLAGS";
    err = errno;
  } else if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
      failed = "ioctl SIOCSIFFLAGS";
      err = errno;
    }
  }
  close(fd);
  return failed ? errno_object(env, err, failed, NULL) : zero(env);
}

struct newaddr_request {
  struct nlmsghdr header;
  struct ifaddrmsg message;
  /* Two attributes (IFA_LOCAL, IFA_ADDRESS) of at most 16 bytes each. */
  char attributes[2 * RTA_SPACE(sizeof(struct in6_addr))];
};

static void add_attribute(struct nlmsghdr *header, unsigned short type, const void *data, size_t len) {
  struct rtattr *attr = (struct rtattr *)((char *)header + NLMSG_ALIGN(header->nlmsg_len));
  attr->rta_type = type;
  attr->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(attr), data, len);
  header->nlmsg_len = NLMSG_ALIGN(header->nlmsg_len) + RTA_ALIGN(attr->rta_len);
}

/* Sends one request and waits for its ACK; returns 0 or a positive errno, with *failed naming the step. */
static int netlink_transact(struct nlmsghdr *request, const char **failed) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  char reply[4096];
  int err = 0;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    *failed = "socket";
    return errno;
  }
  /* The kernel answers at once; the limit only guards against a lost reply. */
  struct timeval limit = {.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (sendto(fd, request, request->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    *failed = "sendto";
    err = errno;
    goto out;
  }
  for (;;) {
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      *failed = "recv";
      err = errno;
      goto out;
    }
    int left = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != request->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        *failed = "recv";
        err = EPROTO;
        goto out;
      }
      const struct nlmsgerr *ack = NLMSG_DATA(h);
      err = ack->error < 0 ? -ack->error : 0;
      goto out;
    }
  }
out:
  close(fd);
  return err;
}

/* addAddress(name, address, prefixLength): 0 or { errno, syscall }. */
napi_value js_add_address(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[IF_NAMESIZE];
  char address[ADDRESS_MAX];
  size_t address_len = 0;
  int64_t prefix = 0;
  unsigned char raw[sizeof(struct in6_addr)];
  int family;
  size_t raw_len;
  if (!get_args(env, info, 3, argv) || !read_ifname(env, argv[0], name)) return NULL;
  if (!expect_type(env, argv[1], napi_string, "address must be a string")) return NULL;
  NAPI_OK(env, napi_get_value_string_utf8(env, argv[1], address, sizeof address, &address_len));
  if (inet_pton(AF_INET, address, raw) == 1) {
    family = AF_INET;
    raw_len = sizeof(struct in_addr);
  } else if (inet_pton(AF_INET6, address, raw) == 1) {
    family = AF_INET6;
    raw_len = sizeof(struct in6_addr);
  } else {
    throw_type(env, "address must be an IPv4 or IPv6 literal");
    return NULL;
  }
  if (!read_int(env, argv[2], 0, family == AF_INET ? 32 : 128, &prefix, "prefix length out of range")) return NULL;
  unsigned int index = if_nametoindex(name);
  if (index == 0) return errno_object(env, errno, "if_nametoindex", NULL);

  struct newaddr_request request;
  memset(&request, 0, sizeof request);
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  request.header.nlmsg_type = RTM_NEWADDR;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  request.header.nlmsg_seq = (uint32_t)time(NULL);
  request.message.ifa_family = (unsigned char)family;
  request.message.ifa_prefixlen = (unsigned char)prefix;
  request.message.ifa_index = index;
  /* As `ip` does: host scope for loopback addresses, global otherwise. */
  int loopback = family == AF_INET ? raw[0] == 127 : memcmp(raw, &in6addr_loopback, raw_len) == 0;
  request.message.ifa_scope = loopback ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE;
  if (family == AF_INET6) request.message.ifa_flags = IFA_F_NODAD;
  add_attribute(&request.header, IFA_LOCAL, raw, raw_len);
  add_attribute(&request.header, IFA_ADDRESS, raw, raw_len);

  const char *failed = "RTM_NEWADDR";
  int err = netlink_transact(&request.header, &failed);
  return err ? errno_object(env, err, failed, NULL) : zero(env);
}
