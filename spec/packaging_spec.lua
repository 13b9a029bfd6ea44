-- libpht as other projects consume it, from an install into a scratch prefix
-- (`cmake --install` of the suite's build tree): a C program built with the
-- flags libpht.pc gives (shared, and static with --static), a CMake project
-- using find_package(libpht CONFIG), the default build type of a bare
-- configure, and `luarocks make` of libpht-dev-1.rockspec into a scratch tree.
local h = require "helpers"
local q = h.q

local function abs(path) return (h.run("cd " .. q(path) .. " && pwd -P"):gsub("\n$", "")) end
local root, build = abs(h.root), abs(h.build)
local fixture = "docker-archive:" .. root .. "/spec/fixtures/reference-v2/stage0-built.tar"

-- A program that opens an image with libpht and prints its layer count.
local program = [[
#include <pht/pht.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    pht_error err;
    pht_image *img;
    if (argc != 2) return 2;
    if (pht_image_open(&img, argv[1], NULL, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("libpht %s: %zu layers\n", pht_version_string(), pht_image_layer_count(img));
    pht_image_free(img);
    return 0;
}
]]

local function have(cmd) return (h.sh("command -v " .. q(cmd))) end

describe("an install into a scratch prefix", function()
  local prefix, dir, pc
  setup(function()
    dir = abs(h.tmpdir())
    prefix = dir .. "/prefix"
    h.run("cmake --install " .. q(build) .. " --prefix " .. q(prefix) .. " >/dev/null")
    h.write(dir .. "/main.c", program)
    pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config "
  end)

  it("gives pkg-config --cflags --libs that build and run a program on libpht.so", function()
    local flags = h.stdout(pc .. "--cflags --libs libpht"):gsub("\n", " ")
    h.run("cc -Wall -Werror -o " .. q(dir .. "/dyn") .. " " .. q(dir .. "/main.c") .. " " .. flags)
    local out = h.stdout("LD_LIBRARY_PATH=" .. q(prefix .. "/lib") .. " " .. q(dir .. "/dyn") .. " " .. q(fixture))
    assert.are.equal("libpht 0.1.0: 2 layers\n", out)
    assert.matches(prefix .. "/lib/libpht.so", h.stdout("LD_LIBRARY_PATH=" .. q(prefix .. "/lib") .. " ldd " .. q(dir .. "/dyn")), 1, true)
  end)

  it("gives pkg-config --static --libs that link the program against libpht.a", function()
    local ok, libs, err = h.sh_split(pc .. "--static --libs libpht")
    assert(ok, "pkg-config --static --libs libpht failed: " .. libs .. err)
    local cflags = h.stdout(pc .. "--static --cflags libpht"):gsub("\n", " ")
    -- The static archive itself in place of -lpht, the rest as pkg-config says.
    local link = (" " .. libs:gsub("\n", " ") .. " "):gsub(" %-lpht ", " " .. q(prefix .. "/lib/libpht.a") .. " ")
    h.run("cc -Wall -Werror -o " .. q(dir .. "/sta") .. " " .. q(dir .. "/main.c") .. " " .. cflags .. link)
    assert.are.equal("libpht 0.1.0: 2 layers\n", h.stdout(q(dir .. "/sta") .. " " .. q(fixture)))
    assert.is_nil(h.stdout("ldd " .. q(dir .. "/sta")):find("libpht", 1, true))
  end)

  it("is found by find_package(libpht CONFIG) with libpht::pht and libpht::pht_static", function()
    local proj = dir .. "/consumer"
    h.run("mkdir -p " .. q(proj) .. " && cp " .. q(dir .. "/main.c") .. " " .. q(proj))
    h.write(proj .. "/CMakeLists.txt", [[
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(libpht 0.1 CONFIG REQUIRED)
add_executable(with_shared main.c)
target_link_libraries(with_shared PRIVATE libpht::pht)
add_executable(with_static main.c)
target_link_libraries(with_static PRIVATE libpht::pht_static)
]])
    h.run("cmake -S " .. q(proj) .. " -B " .. q(proj .. "/b") .. " -DCMAKE_PREFIX_PATH=" .. q(prefix) .. " >/dev/null")
    h.run("cmake --build " .. q(proj .. "/b") .. " >/dev/null")
    for _, exe in ipairs({ "with_shared", "with_static" }) do
      assert.are.equal("libpht 0.1.0: 2 layers\n", h.stdout(q(proj .. "/b/" .. exe) .. " " .. q(fixture)))
    end
    assert.matches(prefix .. "/lib/libpht.so", h.stdout("ldd " .. q(proj .. "/b/with_shared")), 1, true)
    assert.is_nil(h.stdout("ldd " .. q(proj .. "/b/with_static")):find("libpht", 1, true))
  end)
end)

describe("cmake -S . -B DIR with no CMAKE_BUILD_TYPE", function()
  it("configures an optimised build with debug symbols (RelWithDebInfo)", function()
    local dir = abs(h.tmpdir()) .. "/b"
    h.run("cmake -S " .. q(root) .. " -B " .. q(dir) .. " -DPHT_BUILD_TESTS=OFF >/dev/null")
    local cache = h.read(dir .. "/CMakeCache.txt")
    assert.matches("\nCMAKE_BUILD_TYPE:STRING=RelWithDebInfo\n", cache, 1, true)
  end)
end)

describe("libpht-dev-1.rockspec", function()
  it("luarocks make builds and installs the module into a scratch tree, where require finds it", function()
    if not have("luarocks") then return pending("luarocks is not installed (tools/install-deps.sh --test)") end
    local dir = abs(h.tmpdir())
    local src, tree = dir .. "/src", dir .. "/tree"
    -- A copy of what the build reads (a checkout need not be a git tree), so
    -- that the build directory luarocks makes stays out of the source tree.
    h.run("mkdir -p " .. q(src) .. " && tar -C " .. q(root)
      .. " -cf - libpht-dev-1.rockspec CMakeLists.txt core lua cli bench doc | tar -xf - -C " .. q(src))
    local luarocks = jit and "luarocks --lua-version 5.1" or ("luarocks --lua-version " .. h.abi)
    local lua = jit and "luajit" or "lua5.4"
    local extra = jit and " LUA_INCDIR=/usr/include/luajit-2.1" or ""
    h.run("cd " .. q(src) .. " && " .. luarocks .. " --tree " .. q(tree) .. " make" .. extra .. " >/dev/null")
    local out = h.stdout("cd / && unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4 && eval \"$("
      .. luarocks .. " --tree " .. q(tree) .. " path)\" && " .. lua .. " -e "
      .. q([[local pht = require "pht"; require "pht.workflow"
             print(package.searchpath("pht", package.cpath)); print(#pht.sha512("x"))]]))
    assert.are.equal(tree .. "/lib/lua/" .. h.abi .. "/pht.so\n64\n", out)
  end)
end)
