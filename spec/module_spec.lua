local pht = require "pht"

describe("the pht module", function()
  it("reports the version of the C core it was built with", function()
    assert.is_string(pht.version)
    assert.matches("^%d+%.%d+%.%d+$", pht.version)
    local major, minor, patch = pht.version:match("^(%d+)%.(%d+)%.(%d+)$")
    assert.are.equal(tonumber(major) * 1000000 + tonumber(minor) * 1000 + tonumber(patch), pht.version_number)
  end)
end)
