-- tools/install-deps.sh without --test installs all that the README's first
-- command, `tools/install-deps.sh && tools/demo.sh`, needs: every program the
-- demo and the tools it calls run (tools/build.sh, tools/make-base-image.sh,
-- tools/standin-run.lua) comes from a package of that set or from one Debian
-- installs on every machine (Priority: required), directly or as a dependency
-- of one (pkg-config is pkgconf-bin's, which pkg-config pulls in).
local helpers = require "helpers"
local q = helpers.q

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function package_set(args)
  local set = {}
  for _, p in ipairs(lines(helpers.run(q(helpers.root .. "/tools/install-deps.sh") .. " --list " .. args))) do
    set[p] = true
  end
  return set
end

-- The installed packages a set pulls in: the set, and the closure of their
-- Depends and Pre-Depends (every alternative) over what dpkg has installed.
local function closure(set)
  local deps = {}
  local fmt = "${Package}\\t${Depends}, ${Pre-Depends}\\n"
  for _, l in ipairs(lines(helpers.run("dpkg-query -W -f=" .. q(fmt)))) do
    local pkg, list = l:match("^([^\t]+)\t(.*)$")
    if pkg then
      local t = deps[pkg] or {}
      for name in list:gmatch("([%w][%w.+-]*)[^,|]*") do t[#t + 1] = name:gsub(":.*", "") end
      deps[pkg] = t
    end
  end
  local out, todo = {}, {}
  for p in pairs(set) do todo[#todo + 1] = p end
  while #todo > 0 do
    local p = table.remove(todo)
    if not out[p] then
      out[p] = true
      for _, d in ipairs(deps[p] or {}) do todo[#todo + 1] = d end
    end
  end
  return out
end

-- The Debian package that owns a file, and whether every Debian machine has it.
local function owner(path)
  local ok, out = helpers.sh("dpkg-query -S " .. q(path))
  if not ok then
    -- merged /usr: /bin/x is recorded as /usr/bin/x or the other way round
    local alt = path:match("^/usr(/.*)$") or ("/usr" .. path)
    ok, out = helpers.sh("dpkg-query -S " .. q(alt))
  end
  assert(ok, "no Debian package owns " .. path .. ": " .. out)
  local pkg = out:match("^([^:,]+)")
  local prio = helpers.run("dpkg-query -W -f='${Priority}' " .. q(pkg))
  return pkg, prio == "required"
end

-- Programs the demo path runs, each as the demo finds it: a name looked up on
-- PATH, or the absolute path tools/make-base-image.sh takes busybox from.
local demo_programs = {
  "cmake", "pkg-config", "make", "cc", -- tools/build.sh
  "/bin/busybox", "tar", "sha256sum", "sort", "find", "sed", "cut", "install", -- make-base-image.sh
  "lua5.4", "mktemp", "awk", "seq", -- demo.sh, its stand-in run and the train's entrypoint
}

describe("tools/install-deps.sh", function()
  local main
  setup(function() main = closure(package_set("")) end)

  it("lists the main set as a subset of the --test set", function()
    local main, test = package_set(""), package_set("--test")
    for p in pairs(main) do
      assert.is_true(test[p], p .. " is in the main set but not in --test")
    end
  end)

  for _, prog in ipairs(demo_programs) do
    it("installs without --test the package the demo takes " .. prog .. " from", function()
      local path = prog
      if not prog:find("/", 1, true) then
        path = helpers.run("command -v " .. q(prog)):gsub("%s+$", "")
      end
      path = helpers.run("readlink -f " .. q(path)):gsub("%s+$", "")
      local pkg, required = owner(path)
      assert.is_true(main[pkg] or required,
        prog .. " comes from " .. pkg .. ", which tools/install-deps.sh installs only with --test")
    end)
  end
end)
