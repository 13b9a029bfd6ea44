-- Every function the module registers has an entry in doc/lua-api.md, in the
-- `pht.NAME` form for module functions and `TYPE:NAME` for methods.
local pht = require "pht"
local h = require "helpers"

local doc = h.read(h.root .. "/doc/lua-api.md")

local function documented(entry)
  return doc:find(entry, 1, true) ~= nil
end

describe("doc/lua-api.md", function()
  it("documents every module function", function()
    local missing = {}
    for name, value in pairs(pht) do
      if type(value) == "function" and not documented("pht." .. name) then
        missing[#missing + 1] = "pht." .. name
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("documents every method of every pht.* type", function()
    local missing = {}
    for tname, mt in pairs(debug.getregistry()) do
      if type(tname) == "string" and tname:match("^pht%.") and type(mt) == "table"
        and type(mt.__index) == "table" then
        local short = tname:match("^pht%.(.+)$")
        for method, fn in pairs(mt.__index) do
          if type(fn) == "function" and method ~= "close"
            and not documented(short .. ":" .. method) then
            missing[#missing + 1] = short .. ":" .. method
          end
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)
end)
