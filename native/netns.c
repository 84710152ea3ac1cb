/*
 * Interface set-up inside a private network namespace, so that scenarios do
 * not need iproute2's `ip` (absent from minimal images where `unshare` works):
 *
 *   linkUp(name)                       SIOCGIFFLAGS + SIOCSIFFLAGS(IFF_UP)
 *   addAddress(name, address, prefix)  RTM_NEWADDR over NETLINK_ROUTE, as
 *                                      `ip addr add ADDRESS/PREFIX dev NAME`
 *                                      (IPv6 with nodad: never tentative)
 *   routeType(address)                 RTM_GETROUTE with RTA_DST, as
 *                                      `ip route get ADDRESS`: the rtm_type
 *                                      of the route a connect() would use
 *
 * linkUp and addAddress return 0, routeType a number (RTN_LOCAL = 2 once the
 * address is usable); each returns { errno, syscall } for a failed syscall or
 * a kernel NACK (syscall "RTM_NEWADDR" / "RTM_GETROUTE" then: ENETUNREACH is
 * how the kernel answers while an IPv6 address has no local route yet).
 * Only wrong argument types throw.
 *
 * Why addAddress returning is not enough for IPv6 (net/ipv6/addrconf.c):
 * inet6_addr_add() -> ipv6_add_addr() links the address and allocates its
 * local route (ifp->rt) without inserting it; addrconf_prefix_route() adds
 * ADDRESS/128 dev lo, which ip6_route_info_create()/fib6_nh_init() turn into
 * a reject route (fib6_is_reject: a non-loopback destination via lo) that
 * answers ENETUNREACH. addrconf_dad_start() only queues ifp->dad_work on
 * addrconf_wq; addrconf_dad_work() takes rtnl_lock, addrconf_dad_begin()
 * sees IFF_LOOPBACK / IFA_F_NODAD and calls addrconf_dad_completed() ->
 * ipv6_ifa_notify(RTM_NEWADDR) -> __ipv6_ifa_notify() -> ip6_ins_rt(ifp->rt).
 * Until that work has run, connect() to the address gets ENETUNREACH; on a
 * busy machine (rtnl contended by other namespaces) that lasts long enough to
 * be hit. IPv4 has no such step: __inet_insert_ifa() calls the inetaddr
 * notifier chain inside the request, and fib_inetaddr_event() ->
 * fib_add_ifaddr() inserts the local route before RTM_NEWADDR is answered.
 * Bringing lo up adds ::1 synchronously too: addrconf_notify(NETDEV_UP) ->
 * init_loopback() -> add_addr() -> ipv6_ifa_notify() inside SIOCSIFFLAGS.
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

/*
 * Sends one request and waits for its answer: an ACK or NACK, or a message of
 * reply_type whose payload is copied to reply (at most reply_len bytes).
 * Returns 0 or a positive errno, with *failed naming the step.
 */
static int netlink_transact(struct nlmsghdr *request, unsigned short reply_type, void *reply_out, size_t reply_len,
                            const char **failed) {
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
      if (h->nlmsg_seq != request->nlmsg_seq) continue;
      if (reply_out && h->nlmsg_type == reply_type) {
        size_t payload = h->nlmsg_len - NLMSG_LENGTH(0);
        memcpy(reply_out, NLMSG_DATA(h), payload < reply_len ? payload : reply_len);
        goto out;
      }
      if (h->nlmsg_type != NLMSG_ERROR) continue;
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

/* An IPv4 or IPv6 literal into raw (network order), with its family and length; false with a TypeError pending. */
static bool read_ip_literal(napi_env env, napi_value value, unsigned char raw[sizeof(struct in6_addr)], int *family,
                            size_t *raw_len) {
  char address[ADDRESS_MAX];
  size_t address_len = 0;
  if (!expect_type(env, value, napi_string, "address must be a string")) return false;
  NAPI_OK(env, napi_get_value_string_utf8(env, value, address, sizeof address, &address_len));
  if (inet_pton(AF_INET, address, raw) == 1) {
    *family = AF_INET;
    *raw_len = sizeof(struct in_addr);
  } else if (inet_pton(AF_INET6, address, raw) == 1) {
    *family = AF_INET6;
    *raw_len = sizeof(struct in6_addr);
  } else {
    throw_type(env, "address must be an IPv4 or IPv6 literal");
    return false;
  }
  return true;
}

/* addAddress(name, address, prefixLength): 0 or { errno, syscall }. */
napi_value js_add_address(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[IF_NAMESIZE];
  int64_t prefix = 0;
  unsigned char raw[sizeof(struct in6_addr)];
  int family;
  size_t raw_len;
  if (!get_args(env, info, 3, argv) || !read_ifname(env, argv[0], name)) return NULL;
  if (!read_ip_literal(env, argv[1], raw, &family, &raw_len)) return NULL;
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
  int err = netlink_transact(&request.header, NLMSG_ERROR, NULL, 0, &failed);
  return err ? errno_object(env, err, failed, NULL) : zero(env);
}

struct getroute_request {
  struct nlmsghdr header;
  struct rtmsg message;
  char attributes[RTA_SPACE(sizeof(struct in6_addr))];
};

/* routeType(address): the rtm_type of the kernel's route to address, or { errno, syscall }. */
napi_value js_route_type(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  unsigned char raw[sizeof(struct in6_addr)];
  int family;
  size_t raw_len;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!read_ip_literal(env, argv[0], raw, &family, &raw_len)) return NULL;

  struct getroute_request request;
  memset(&request, 0, sizeof request);
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  request.header.nlmsg_type = RTM_GETROUTE;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = (uint32_t)time(NULL);
  request.message.rtm_family = (unsigned char)family;
  request.message.rtm_dst_len = (unsigned char)(raw_len * 8);
  add_attribute(&request.header, RTA_DST, raw, raw_len);

  struct rtmsg route;
  memset(&route, 0, sizeof route);
  const char *failed = "RTM_GETROUTE";
  int err = netlink_transact(&request.header, RTM_NEWROUTE, &route, sizeof route, &failed);
  if (err) return errno_object(env, err, failed, NULL);
  napi_value v;
  NAPI_OK(env, napi_create_int32(env, route.rtm_type, &v));
  return v;
}
