/*
 * Keeps standard output for what the operator asked for. uWebSockets.js prints debug lines from C
 * ("Browsed to SNI: chat.test") on file descriptor 1 in every worker thread, where Sluice's access log also
 * goes by default; only the descriptor table can separate them, and Node has no dup/dup2. separateStdout()
 * keeps a private duplicate of fd 1 for the access log and points fd 1 at stderr (fd 2), once, in the
 * primary, before any worker starts. Not per connection: no hot path here.
 */
#include <node_api.h>

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#endif

/* separateStdout(): the new descriptor of what fd 1 was (close-on-exec), or throws with the errno text. */
napi_value js_separate_stdout(napi_env env, napi_callback_info info) {
  (void)info;
#ifdef _WIN32
  napi_throw_error(env, "ERR_SLUICE_STDIO", "separateStdout is not available on Windows");
  return NULL;
#else
  int saved = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (saved < 0) {
    napi_throw_error(env, "ERR_SLUICE_STDIO", strerror(errno));
    return NULL;
  }
  int result;
  do {
    result = dup2(2, 1);
  } while (result < 0 && errno == EINTR);
  if (result < 0) {
    int error = errno;
    close(saved);
    napi_throw_error(env, "ERR_SLUICE_STDIO", strerror(error));
    return NULL;
  }
  napi_value fd;
  if (napi_create_int32(env, saved, &fd) != napi_ok) return NULL;
  return fd;
#endif
}
