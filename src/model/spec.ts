/**
 * The normalized manifest model: what the loader (src/spec/) produces after parsing,
 * schema validation, canonicalisation of Compose short/long syntaxes, Docker's
 * defaults and consistency checks — and before IPAM. Everything here is plain data,
 * deeply frozen once built.
 */

/** Where a value came from in the manifests (1-based line and column). */
export interface SourceRef {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export type GatewayMode = 'nat' | 'nat-unprotected' | 'routed' | 'isolated';
export type Protocol = 'tcp' | 'udp' | 'sctp';

/** One address family's IPAM request of a network (Compose `ipam.config[]` entry). */
export interface IpamRequest {
  /** CIDR, canonical (host bits zero). Absent: allocate from the default pools. */
  readonly subnet?: string;
  /** CIDR inside subnet: the dynamic allocation sub-pool. */
  readonly ipRange?: string;
  /** Gateway address (no prefix). Absent: first free address. */
  readonly gateway?: string;
  /** Reserved addresses, name → address. */
  readonly aux: Readonly<Record<string, string>>;
  readonly src?: SourceRef;
}

/** daemon.json keys that configure the default bridge and global behaviour. */
export interface DaemonSpec {
  readonly bip?: string; // "192.168.1.1/24": gateway address with prefix
  readonly fixedCidr?: string;
  readonly mtu?: number;
  readonly defaultGateway?: string;
  readonly dns: readonly string[];
  readonly dnsSearch: readonly string[];
  readonly dnsOpts: readonly string[];
  readonly icc: boolean;
  readonly ipMasq: boolean;
  /** Default host binding address for published ports on the default bridge (`ip`). */
  readonly ip: string;
  readonly ipv6: boolean;
  readonly bip6?: string;
  readonly fixedCidrV6?: string;
  readonly defaultGatewayV6?: string;
  /** Replaces Docker's local default pools when given. */
  readonly defaultAddressPools?: readonly { readonly base: string; readonly size: number }[];
  readonly userlandProxy: boolean;
}

export interface NetworkSpec {
  readonly name: string;
  readonly driver: 'bridge';
  /** True for the predefined default bridge network `bridge`. */
  readonly isDefault: boolean;
  readonly internal: boolean;
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  readonly ipam4: IpamRequest;
  readonly ipam6: IpamRequest;
  /** `com.docker.network.bridge.name` when given. */
  readonly bridgeName?: string;
  readonly icc: boolean;
  readonly masquerade: boolean;
  readonly hostBindingIpv4: string;
  readonly gatewayModeV4: GatewayMode;
  readonly gatewayModeV6: GatewayMode;
  readonly inhibitIpv4: boolean;
  /** `com.docker.network.driver.mtu`; undefined = kernel default. */
  readonly mtu?: number;
  readonly ifacePrefix: string;
  readonly hostIpv4?: string;
  readonly hostIpv6?: string;
  /** driver_opts as given (strings), for inspect. */
  readonly options: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly src?: SourceRef;
}

export interface PortSpec {
  /** Container port range (inclusive). */
  readonly target: number;
  readonly targetEnd: number;
  /** Host port range; absent = ephemeral. */
  readonly published?: number;
  readonly publishedEnd?: number;
  /** Host address; absent = the network's host binding default. */
  readonly hostIp?: string;
  readonly protocol: Protocol;
  readonly src?: SourceRef;
}

export interface AttachmentSpec {
  readonly network: string;
  readonly aliases: readonly string[];
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly macAddress?: string;
  readonly gwPriority: number;
  /** Compose `interface_name` / `com.docker.network.endpoint.ifname`. */
  readonly interfaceName?: string;
  readonly src?: SourceRef;
}

export interface ExtraHost {
  readonly host: string;
  readonly ip: string;
}

export type NetworkMode = 'bridge' | 'host' | 'none';

export interface ContainerSpec {
  readonly name: string;
  /** `bridge`: a namespace with the listed networks; `host`: the host's stack; `none`: loopback only. */
  readonly mode: NetworkMode;
  /** An existing namespace to attach (path); never deleted by tether. */
  readonly netns?: string;
  /** In manifest order; the default `bridge` network when none is listed. */
  readonly networks: readonly AttachmentSpec[];
  readonly ports: readonly PortSpec[];
  readonly hostname?: string;
  readonly dns: readonly string[];
  readonly dnsSearch: readonly string[];
  readonly dnsOpt: readonly string[];
  readonly extraHosts: readonly ExtraHost[];
  readonly src?: SourceRef;
}

export interface ManifestFile {
  readonly path: string;
  readonly sha256: string;
}

/** A warning found while loading (not an error: the manifest still applies). */
export interface SpecWarning {
  readonly code: string;
  readonly message: string;
  readonly src?: SourceRef;
}

export interface Spec {
  readonly daemon: DaemonSpec;
  /** User-defined networks plus the predefined `bridge`; insertion order = manifest order, `bridge` first. */
  readonly networks: Readonly<Record<string, NetworkSpec>>;
  readonly containers: Readonly<Record<string, ContainerSpec>>;
  readonly files: readonly ManifestFile[];
  readonly warnings: readonly SpecWarning[];
}
