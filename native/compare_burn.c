/*
 * cpuBurn(iterations): the heavy handler's CPU work (burn.h) for the Node
 * cluster workers of `reuseport compare --with-node`. The executable
 * calibrates the iteration count once; a Node worker burns exactly that many
 * on the JS thread, so it is busy for as long as a C worker and the heavy
 * phase compares accept models, not a JS loop against a C one.
 */
#include "addon.h"
#include "burn.h"

/* 2^53: every larger count would be a float, not an exact integer. */
#define BURN_MAX_ITERATIONS 9007199254740992.0

/* cpuBurn(iterations): undefined. */
napi_value js_cpu_burn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t iterations;
  if (!get_args(env, info, 1, argv) ||
      !read_int(env, argv[0], 0, BURN_MAX_ITERATIONS, &iterations, "iterations must be a whole number >= 0")) {
    return NULL;
  }
  burn((uint64_t)iterations);
  return NULL;
}
