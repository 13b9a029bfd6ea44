-- doc/protocol.md is the protocol's home: every "§N" or "§N.M" the docs,
-- the Lua and C sources and the command's help cite is a numbered heading of
-- it, and no doc or help text sends the reader to a PROTOCOL.md the project
-- does not have.
local h = require "helpers"
local q = h.q

local protocol = "doc/protocol.md"

-- The section numbers doc/protocol.md has headings for: "## 7. Pre-run" is
-- "7", "### 7.5 Check the results so far" is "7.5".
local function sections()
  local set = {}
  for line in (h.read(h.root .. "/" .. protocol) .. "\n"):gmatch("(.-)\n") do
    local major, minor = line:match("^#+%s+(%d+)%.(%d*)%s")
    if major then set[minor ~= "" and (major .. "." .. minor) or major] = true end
  end
  return set
end

local function files(where, pattern)
  local out = h.run("cd " .. q(h.root) .. " && find " .. where .. " -type f \\( " .. pattern .. " \\) | LC_ALL=C sort")
  local list = {}
  for f in out:gmatch("[^\n]+") do list[#list + 1] = f end
  return list
end

describe(protocol, function()
  it("keeps a numbered heading for every section 1 to 9", function()
    local have = sections()
    for n = 1, 9 do assert.is_true(have[tostring(n)], "no heading for §" .. n) end
  end)

  it("has a heading for every § that the docs and sources cite", function()
    local have = sections()
    local list = files("README.md doc lua scripts cli core",
      "-name '*.md' -o -name '*.lua' -o -name '*.c' -o -name '*.h'")
    assert.is_true(#list > 20, "found only " .. #list .. " files")
    local missing, seen = {}, 0
    for _, f in ipairs(list) do
      local n = 0
      for line in (h.read(h.root .. "/" .. f) .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        for ref in line:gmatch("§(%d+%.?%d*)") do
          ref = ref:gsub("%.$", "")
          seen = seen + 1
          if not have[ref] then missing[#missing + 1] = f .. ":" .. n .. ": §" .. ref end
        end
      end
    end
    assert.is_true(seen > 20, "found only " .. seen .. " § references")
    assert.are.same({}, missing)
  end)

  it("is what the docs cite, not a PROTOCOL.md the project lacks", function()
    local list = files("README.md doc spec/fixtures examples", "-name '*.md'")
    local bad = {}
    for _, f in ipairs(list) do
      local n = 0
      for line in (h.read(h.root .. "/" .. f) .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        if line:find("PROTOCOL.md", 1, true) or line:find("PROTOCOL §", 1, true) then
          bad[#bad + 1] = f .. ":" .. n .. ": " .. line
        end
      end
    end
    assert.are.same({}, bad)
  end)

  it("is what every verb's --help cites", function()
    local pht = q(h.build .. "/bin/pht")
    for _, verb in ipairs({ "", "keygen", "build", "pre-run", "post-run", "inspect", "decrypt-results" }) do
      local out = h.run(pht .. " " .. verb .. " --help")
      assert.is_nil(out:find("PROTOCOL", 1, true), "pht " .. verb .. " --help cites PROTOCOL:\n" .. out)
      for ref in out:gmatch("§(%d+%.?%d*)") do
        assert.is_true(sections()[(ref:gsub("%.$", ""))], "pht " .. verb .. " --help cites §" .. ref)
      end
    end
  end)
end)
