-- luarocks make: builds the `pht` Lua module (core and binding in one pht.so)
-- against the system's OpenSSL 3, cJSON, libarchive and libcurl, and
-- installs it with the pht.* Lua modules into the rock tree.
--   luarocks --lua-version 5.4 --tree DIR make
--   luarocks --lua-version 5.1 --tree DIR make LUA_INCDIR=/usr/include/luajit-2.1   (LuaJIT)
rockspec_format = "3.0"
package = "libpht"
version = "dev-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "The Personal Health Train security protocol for Lua (C core)",
  detailed = [[
libpht checks, decrypts, hashes, signs and re-encrypts Personal Health Train
container images byte for byte like the Python reference, streaming in
bounded memory. This rock installs its Lua module, `require "pht"`.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
-- OpenSSL 3, cJSON, libarchive and libcurl are found by CMake through
-- pkg-config (Debian keeps curl's headers under a multiarch directory, where
-- LuaRocks' external_dependencies would not look).
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    PHT_LUA_INCDIR = "$(LUA_INCDIR)",
    PHT_LUA_LIBDIR = "$(LIBDIR)",
    PHT_LUA_DIR = "$(LUADIR)",
    PHT_BUILD_SHARED = "OFF",
    PHT_BUILD_STATIC = "OFF",
    PHT_BUILD_TESTS = "OFF",
    PHT_BUILD_CLI = "OFF",
    PHT_WITH_LUA54 = "OFF",
    PHT_WITH_LUAJIT = "OFF",
  },
}
