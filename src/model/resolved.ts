/**
 * The desired world after IPAM: every network has its subnets, gateway and bridge name;
 * every container endpoint its interface names and addresses; every published port its
 * host port. `inspect`, the DNS resolver, the firewall builder and the desired
 * KernelState are all derived from this one value.
 */
import type { ContainerSpec, NetworkSpec, Protocol, Spec } from './spec.js';

export interface FamilyConfig {
  /** Canonical network CIDR, e.g. "172.18.0.0/16". */
  readonly subnet: string;
  readonly ipRange?: string;
  /** Gateway address; absent for gateway mode `isolated` or inhibit_ipv4 on an internal network. */
  readonly gateway?: string;
  /** True when the gateway address is put on the bridge (false with inhibit_ipv4 / isolated). */
  readonly onBridge: boolean;
  /** Where containers' default route points (gateway, or daemon default-gateway). */
  readonly routeVia?: string;
  readonly aux: Readonly<Record<string, string>>;
}

export interface ResolvedNetwork {
  readonly name: string;
  readonly id: string;
  readonly bridge: string;
  readonly spec: NetworkSpec;
  readonly v4?: FamilyConfig;
  readonly v6?: FamilyConfig;
}

export interface ResolvedEndpoint {
  readonly network: string;
  /** Interface name inside the container. */
  readonly ifname: string;
  /** Host end of the veth. */
  readonly hostVeth: string;
  /** The container end's MAC: the manifest's, else 02:42 and the IPv4 address (ipam.ts). */
  readonly mac?: string;
  /** Address without prefix. */
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly prefix4?: number;
  readonly prefix6?: number;
  readonly aliases: readonly string[];
  readonly gwPriority: number;
  /** This endpoint carries the container's IPv4 / IPv6 default route. */
  readonly isGateway4: boolean;
  readonly isGateway6: boolean;
}

/** One published port binding of one address family (Docker's PortBinding after normalisation). */
export interface ResolvedPort {
  readonly family: 4 | 6;
  readonly protocol: Protocol;
  readonly containerPort: number;
  /** The container's address this binding forwards to. */
  readonly containerIp: string;
  /** Host port; 0 when NAT is off (gateway mode routed: the host port is ignored). */
  readonly hostPort: number;
  /** "0.0.0.0", "::", or a specific address of the binding's family. */
  readonly hostIp: string;
  /** True when the host port was chosen by tether (ephemeral, or from a range). */
  readonly ephemeral: boolean;
  /** Gateway mode of the endpoint's network for this family. */
  readonly mode: 'nat' | 'nat-unprotected' | 'routed';
  /** The network carrying the binding. */
  readonly network: string;
  /**
   * An IPv6 host binding of a container without IPv6: served by tether's userland proxy
   * to `containerIp` (IPv4), as docker-proxy does; no NAT rule.
   */
  readonly proxy?: boolean;
}

export interface ResolvedContainer {
  readonly name: string;
  readonly id: string;
  readonly spec: ContainerSpec;
  readonly mode: 'bridge' | 'host' | 'none';
  /** Named namespace tether creates (mode bridge/none without `netns:`). */
  readonly netnsName?: string;
  /** Path to enter the namespace; "" for host mode. */
  readonly netnsPath: string;
  readonly attached: boolean;
  /** In interface order. */
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly ports: readonly ResolvedPort[];
}

export interface Resolved {
  readonly instance: string;
  readonly spec: Spec;
  readonly networks: Readonly<Record<string, ResolvedNetwork>>;
  readonly containers: Readonly<Record<string, ResolvedContainer>>;
}
