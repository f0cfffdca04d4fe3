{
  "targets": [
    {
      "target_name": "sluice_upstream",
      "sources": ["src/addon.c", "src/connection.c", "src/frames.c", "src/stdio.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=gnu11", "-O2"] }
    }
  ]
}
