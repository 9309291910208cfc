/*
 * setns(2) for Node: lets tether open a netlink socket inside a container's network
 * namespace (enter, create the socket, return), so container namespaces are read
 * in-process instead of by one `ip` process each. Node's JS runs on one thread: between
 * the two setns calls no other JS runs, and libuv's worker threads are unaffected
 * (setns changes only the calling thread).
 *
 * Built by scripts/setup.sh:  cc -shared -fPIC -O2 -I/usr/include/node native/setns.c -o native/build/setns.node
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <sched.h>
#include <string.h>

static napi_value Setns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "setns(fd): fd must be an integer");
    return NULL;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "setns", NAPI_AUTO_LENGTH, Setns, NULL, &fn);
  napi_set_named_property(env, exports, "setns", fn);
  return exports;
}
