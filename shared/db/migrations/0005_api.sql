-- The api lists a tenant's emails newest first and counts those registered in a range.
CREATE INDEX emails_tenant_created ON emails (tenant_id, created_at);
