"""The descriptor pool every berth-generated module registers in (see build_protos)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
