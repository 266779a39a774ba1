-- Argo CD health of a selfguide.dev/SelfGuideJob, from the conditions the operator writes (docs/gitops.md).
-- Complete -> Healthy, Failed -> Degraded (both final), suspended -> Suspended, otherwise Progressing.
local hs = {status = "Progressing", message = "Waiting for the selfguide operator"}

local function condition(kind)
  for _, c in ipairs(obj.status and obj.status.conditions or {}) do
    if c.type == kind and c.status == "True" then
      return c
    end
  end
  return nil
end

local failed, complete, suspended = condition("Failed"), condition("Complete"), condition("Suspended")
if failed ~= nil then
  hs.status, hs.message = "Degraded", failed.message
elseif complete ~= nil then
  hs.status, hs.message = "Healthy", complete.message
elseif suspended ~= nil or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  hs.message = suspended ~= nil and suspended.message or "spec.suspend is true"
elseif obj.status ~= nil and (obj.status.observedGeneration or 0) < (obj.metadata.generation or 0) then
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
else
  local reconciling = condition("Reconciling")
  if reconciling ~= nil then
    hs.message = reconciling.message
  end
end
return hs
