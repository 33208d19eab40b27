-- Argo CD health check for kstrata's ConfigProfile and SealedSecret
-- (argocd-cm keys resource.customizations.health.kstrata.dev_ConfigProfile and
-- resource.customizations.health.kstrata.dev_SealedSecret; both use this script).
--
-- Argo CD runs it with `obj` set to the live object and reads the table it
-- returns.  From the status the kstrata operator writes:
--   Progressing  the operator has not reported on this generation of the spec
--                yet (no status, status.observedGeneration or the Ready
--                condition's observedGeneration behind metadata.generation),
--                or Ready is Unknown;
--   Healthy      Ready=True for this generation: the ConfigMap or Secret holds it;
--   Degraded     Ready=False for this generation: refused, with the condition's
--                reason and message (the last good ConfigMap or Secret keeps
--                serving; docs/operations.md "An object is not Ready").
-- Lua 5.1, as Argo CD's gopher-lua runs it; tested with lua5.1 on objects the
-- operator wrote (tests/integrations/test_argocd_health.py).

local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
if status == nil or status.observedGeneration == nil then
  return progressing("Waiting for the kstrata operator to reconcile this " .. obj.kind)
end
if generation ~= nil and status.observedGeneration < generation then
  return progressing(
    "Waiting for the kstrata operator to reconcile generation " .. generation
      .. " (status is for generation " .. status.observedGeneration .. ")"
  )
end

local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  return progressing("Waiting for the Ready condition")
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return progressing("Waiting for the Ready condition of generation " .. generation)
end

local message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.status == "False" then
  hs.status = "Degraded"
  if ready.reason ~= nil and ready.reason ~= "" then
    message = ready.reason .. ": " .. message
  end
  hs.message = message
else
  return progressing("Ready is " .. tostring(ready.status) .. ": " .. message)
end
return hs
