{
  "targets": [
    {
      "target_name": "sluice_upstream",
      "sources": ["src/addon.c", "src/connection.c", "src/tables.c", "src/env.c", "src/frames.c", "src/liveness.c", "src/stdio.c", "src/loadgen.c", "src/loadgen-read.c", "src/loadgen-api.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=gnu11", "-O2"] }
    },
    {
      "target_name": "ws-echo",
      "type": "executable",
      "conditions": [["OS!='linux'", { "type": "none" }]],
      "sources": ["tools/ws-echo.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
