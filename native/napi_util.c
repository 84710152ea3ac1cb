/*
 * N-API helpers shared by every part of the addon: throwing, argument
 * reading, result objects, { errno, syscall } objects and settling the
 * promise of an async work. Declared in addon.h.
 */
#include "addon.h"

#include <math.h>
#include <stdbool.h>

void throw_last_error(napi_env env) {
  bool pending = false;
  const napi_extended_error_info *info = NULL;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL, info && info->error_message ? info->error_message : "reuseport_native: napi call failed");
}

int throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return 0;
}

int throw_range(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return 0;
}

/* Sets *present = 0 when the property is missing or undefined. Returns 0 on exception. */
int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out, int *present) {
  napi_valuetype t;
  NAPI_OK(env, napi_get_named_property(env, obj, name, out));
  NAPI_OK(env, napi_typeof(env, *out, &t));
  *present = t != napi_undefined;
  return 1;
}

int expect_type(napi_env env, napi_value v, napi_valuetype want, const char *message) {
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, v, &t));
  if (t != want) return throw_type(env, message);
  return 1;
}

int read_bool(napi_env env, napi_value v, int *out, const char *message) {
  bool b;
  if (!expect_type(env, v, napi_boolean, message)) return 0;
  NAPI_OK(env, napi_get_value_bool(env, v, &b));
  *out = b ? 1 : 0;
  return 1;
}

/* An integer-valued number in [min, max]. */
int read_int(napi_env env, napi_value v, double min, double max, int64_t *out, const char *message) {
  double d;
  if (!expect_type(env, v, napi_number, message)) return 0;
  NAPI_OK(env, napi_get_value_double(env, v, &d));
  if (!isfinite(d) || floor(d) != d || d < min || d > max) return throw_range(env, message);
  *out = (int64_t)d;
  return 1;
}

int read_int_prop(napi_env env, napi_value obj, const char *name, double min, double max, int64_t *out,
                  const char *message) {
  napi_value v;
  int present;
  if (!get_prop(env, obj, name, &v, &present)) return 0;
  if (!present) return throw_type(env, message);
  return read_int(env, v, min, max, out, message);
}

napi_value make_object(napi_env env) {
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) {
    throw_last_error(env);
    return NULL;
  }
  return obj;
}

int set_number(napi_env env, napi_value obj, const char *name, double value) {
  napi_value v;
  NAPI_OK(env, napi_create_double(env, value, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, name, v));
  return 1;
}

int set_string(napi_env env, napi_value obj, const char *name, const char *value) {
  napi_value v;
  NAPI_OK(env, napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, name, v));
  return 1;
}

napi_value errno_object(napi_env env, int err, const char *syscall, const char *option) {
  napi_value obj = make_object(env);
  if (obj == NULL) return NULL;
  if (!set_number(env, obj, "errno", err)) return NULL;
  if (!set_string(env, obj, "syscall", syscall)) return NULL;
  if (option != NULL && !set_string(env, obj, "option", option)) return NULL;
  return obj;
}

int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_value undef;
  NAPI_OK(env, napi_get_undefined(env, &undef));
  for (size_t i = 0; i < want; i++) argv[i] = undef;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return 1;
}

/* Reads a Uint8Array (a Buffer is one) argument. */
int read_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len, const char *message) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *raw = NULL;
  NAPI_OK(env, napi_is_typedarray(env, v, &is_typed));
  if (!is_typed) return throw_type(env, message);
  NAPI_OK(env, napi_get_typedarray_info(env, v, &type, len, &raw, NULL, NULL));
  if (type != napi_uint8_array && type != napi_uint8_clamped_array) return throw_type(env, message);
  *data = raw;
  return 1;
}

void settle_async_work(napi_env env, napi_deferred deferred, napi_async_work work, napi_value result,
                       const char *failure) {
  int reject = result == NULL;
  if (reject) {
    /* Whatever went wrong is the pending exception: hand it to the promise instead. */
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending || napi_get_and_clear_last_exception(env, &result) != napi_ok) {
      napi_value message;
      napi_create_string_utf8(env, failure, NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &result);
    }
  }
  if (reject)
    napi_reject_deferred(env, deferred, result);
  else
    napi_resolve_deferred(env, deferred, result);
  if (work != NULL) napi_delete_async_work(env, work);
}

int queue_async_work(napi_env env, const char *resource, napi_async_execute_callback execute,
                     napi_async_complete_callback complete, void *data, napi_deferred deferred, napi_async_work *work,
                     const char *failure) {
  napi_value name;
  if (napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name) == napi_ok &&
      napi_create_async_work(env, NULL, name, execute, complete, data, work) == napi_ok &&
      napi_queue_async_work(env, *work) == napi_ok)
    return 1;
  /* The promise exists: settle it rather than leave it pending forever. */
  throw_last_error(env);
  settle_async_work(env, deferred, *work, NULL, failure);
  *work = NULL;
  return 0;
}
