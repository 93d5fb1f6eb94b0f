"""Private networking for an Azure stack: one VNet, a private-endpoint subnet, private DNS.

With public network access off (the default, and the only choice on test and prod) the
workspace, registry, storage, vaults and container registry answer only on private endpoints.
Each endpoint registers its address in the private DNS zone of its service, and every zone is
linked to the VNet, so the public names (``<ws>.api.azureml.ms``, ``<vault>.vault.azure.net``)
resolve to private addresses from inside the network and nowhere else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure_native

from components.azure._shared import AzureTarget
from components.common import validate_tags

# Private-link sub-resource (group id) -> the private DNS zones its records live in, from
# Microsoft's "Azure Private Endpoint private DNS zone values" table (public cloud).
PRIVATE_DNS_ZONES: Mapping[str, tuple[str, ...]] = {
    "amlworkspace": ("privatelink.api.azureml.ms", "privatelink.notebooks.azure.net"),
    "amlregistry": ("privatelink.api.azureml.ms",),
    "blob": ("privatelink.blob.core.windows.net",),
    "vault": ("privatelink.vaultcore.azure.net",),
    "registry": ("privatelink.azurecr.io",),
}


@dataclass
class PrivateTarget:
    """One resource reached through a private endpoint: its ARM id and private-link group id."""

    resource_id: pulumi.Input[str]
    group_id: str


@dataclass
class PrivateNetworkArgs:
    """The address plan and the resources that get a private endpoint (key -> target)."""

    environment: str
    tags: Mapping[str, str]
    address_space: str = "10.60.0.0/16"
    endpoint_subnet: str = "10.60.1.0/24"
    targets: Mapping[str, PrivateTarget] = field(default_factory=dict)


def validate_network(args: PrivateNetworkArgs) -> None:
    """Fail before creating anything on an address plan Azure would reject."""
    try:
        space = ipaddress.IPv4Network(args.address_space)
    except ValueError:
        raise ValueError(f"address_space: {args.address_space!r} is not valid; use an IPv4 CIDR such as "
                         "10.60.0.0/16") from None
    try:
        subnet = ipaddress.IPv4Network(args.endpoint_subnet)
    except ValueError:
        raise ValueError(f"endpoint_subnet: {args.endpoint_subnet!r} is not valid; use an IPv4 CIDR such as "
                         "10.60.1.0/24") from None
    if not subnet.subnet_of(space):
        raise ValueError(f"endpoint_subnet: {args.endpoint_subnet!r} is not valid; use a CIDR inside "
                         f"address_space {args.address_space}")
    for key, target in sorted(args.targets.items()):
        if target.group_id not in PRIVATE_DNS_ZONES:
            raise ValueError(f"targets.{key}.group_id: {target.group_id!r} is not valid; allowed: "
                             f"{', '.join(sorted(PRIVATE_DNS_ZONES))}")


def _zone_key(zone: str) -> str:
    """``privatelink.api.azureml.ms`` -> ``api-azureml-ms`` (a stable child-name suffix)."""
    return zone.removeprefix("privatelink.").replace(".", "-")


class PrivateNetwork(pulumi.ComponentResource):
    """VNet + private-endpoint subnet, one private endpoint per target, DNS zones linked to the VNet."""

    vnet_id: pulumi.Output[str]
    """ARM id of the virtual network."""
    subnet_id: pulumi.Output[str]
    """ARM id of the private-endpoint subnet."""
    private_endpoint_ids: pulumi.Output[dict[str, str]]
    """Target key -> ARM id of its private endpoint."""
    dns_zones: pulumi.Output[list[str]]
    """Names of the private DNS zones linked to the VNet."""

    def __init__(self, name: str, args: PrivateNetworkArgs, target: AzureTarget,
                 opts: pulumi.ResourceOptions | None = None):
        validate_tags(args.tags)
        validate_network(args)
        super().__init__("shipway:azure:PrivateNetwork", name, None, opts)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        # Physical names are fixed (unique within the resource group) so children can name their
        # parent without waiting for its outputs; dependencies are explicit instead.
        vnet_name = f"shipway-{args.environment}-vnet"
        self.vnet = azure_native.network.VirtualNetwork(
            f"{name}-vnet", virtual_network_name=vnet_name,
            resource_group_name=target.resource_group_name, location=target.location,
            address_space=azure_native.network.AddressSpaceArgs(address_prefixes=[args.address_space]),
            tags=tags, opts=child)
        self.subnet = azure_native.network.Subnet(
            f"{name}-endpoints", resource_group_name=target.resource_group_name,
            virtual_network_name=vnet_name, subnet_name="private-endpoints", address_prefix=args.endpoint_subnet,
            # NSG rules apply to private endpoints too, and nothing else runs in this subnet.
            private_endpoint_network_policies="Enabled",
            default_outbound_access=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.vnet]))

        zones = sorted({z for t in args.targets.values() for z in PRIVATE_DNS_ZONES[t.group_id]})
        self.zones = {
            zone: azure_native.privatedns.PrivateZone(
                f"{name}-{_zone_key(zone)}", private_zone_name=zone, location="global",
                resource_group_name=target.resource_group_name, tags=tags, opts=child)
            for zone in zones
        }
        self.links = {
            zone: azure_native.privatedns.VirtualNetworkLink(
                f"{name}-{_zone_key(zone)}-link", private_zone_name=zone,
                virtual_network_link_name=vnet_name,
                resource_group_name=target.resource_group_name, location="global",
                virtual_network=azure_native.privatedns.SubResourceArgs(id=self.vnet.id),
                # Records come from the endpoints' zone groups, never from VM auto-registration.
                registration_enabled=False, tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[z]))
            for zone, z in self.zones.items()
        }

        self.endpoints: dict[str, azure_native.network.PrivateEndpoint] = {}
        self.zone_groups: dict[str, azure_native.network.PrivateDnsZoneGroup] = {}
        for key, tgt in sorted(args.targets.items()):
            endpoint_name = f"shipway-{args.environment}-{key}"
            endpoint = azure_native.network.PrivateEndpoint(
                f"{name}-{key}", private_endpoint_name=endpoint_name,
                resource_group_name=target.resource_group_name, location=target.location,
                subnet=azure_native.network.SubnetArgs(id=self.subnet.id),
                private_link_service_connections=[azure_native.network.PrivateLinkServiceConnectionArgs(
                    name=f"{key}-{tgt.group_id}", private_link_service_id=tgt.resource_id,
                    group_ids=[tgt.group_id])],
                tags=tags, opts=child)
            self.endpoints[key] = endpoint
            self.zone_groups[key] = azure_native.network.PrivateDnsZoneGroup(
                f"{name}-{key}-dns", resource_group_name=target.resource_group_name,
                private_endpoint_name=endpoint_name, private_dns_zone_group_name="default",
                private_dns_zone_configs=[
                    azure_native.network.PrivateDnsZoneConfigArgs(
                        name=_zone_key(zone), private_dns_zone_id=self.zones[zone].id)
                    for zone in PRIVATE_DNS_ZONES[tgt.group_id]
                ],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[endpoint, *self.links.values()]))

        self.vnet_id = self.vnet.id
        self.subnet_id = self.subnet.id
        self.private_endpoint_ids = pulumi.Output.all(
            **{k: e.id for k, e in self.endpoints.items()}).apply(dict)
        self.dns_zones = pulumi.Output.from_input(zones)
        self.register_outputs({
            "vnet_id": self.vnet_id,
            "subnet_id": self.subnet_id,
            "private_endpoint_ids": self.private_endpoint_ids,
            "dns_zones": self.dns_zones,
        })
