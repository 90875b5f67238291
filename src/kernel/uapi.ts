// Kernel ABI numbers from <linux/netfilter/nf_tables.h>, <linux/netfilter.h> and <linux/netlink.h>.
// They are fixed by the kernel's user-space interface; libnftnl's own attribute numbers come from
// the addon, which reads them from the installed headers.

export const NFT_MSG = {
  NEWTABLE: 0, DELTABLE: 2, NEWCHAIN: 3, DELCHAIN: 5, NEWRULE: 6, DELRULE: 8,
  NEWSET: 9, DELSET: 11, NEWSETELEM: 12, DELSETELEM: 14,
} as const;

export const NLM_F = { ECHO: 0x8, REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400, APPEND: 0x800 } as const;

export const NFPROTO = { inet: 1, ip: 2, ip6: 10 } as const;

export const NFT_TABLE_F_DORMANT = 1;

export const HOOKS = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;

export const NF_VERDICT = { drop: 0, accept: 1 } as const;
export const NFT_VERDICT = { continue: -1, break: -2, jump: -3, goto: -4, return: -5 } as const;

export const NFT_REG_VERDICT = 0;
export const NFT_REG_1 = 1;
export const NFT_REG_2 = 2;
export const NFT_REG32_00 = 8;

export const NFT_PAYLOAD_BASE = { network: 1, transport: 2 } as const;
export const NFT_META_KEY = { mark: 3, nfproto: 15, l4proto: 16 } as const;
export const NFT_CMP = { '==': 0, '!=': 1 } as const;
export const NFT_LOOKUP_F_INV = 1;
export const NFT_NG_RANDOM = 1;
export const NFT_NAT_DNAT = 1;
export const NF_NAT_RANGE = { MAP_IPS: 1, PROTO_SPECIFIED: 2, PROTO_RANDOM_FULLY: 16 } as const;
export const NFT_REJECT_ICMP_UNREACH = 0;
export const ICMP_PORT_UNREACH = { ip: 3, ip6: 4 } as const;

export const NFT_CT_STATE = 0;
export const NFT_CT_LABELS = 13;
export const NF_CT_LABELS_LENGTH = 16;
export const NF_CT_STATE_NEW = 8;
export const NFT_FIB_RESULT_ADDRTYPE = 3;
export const NFTA_FIB_F = { saddr: 1, daddr: 2 } as const;
export const RTN_LOCAL = 2;
export const NFT_DYNSET_OP_UPDATE = 1;
export const NFT_SOCKET_KEY = { transparent: 0, wildcard: 2 } as const;

export const NFT_SET = { MAP: 0x8, TIMEOUT: 0x10, EVAL: 0x20 } as const;
export const NFT_DATA_VERDICT = 0xffffff00;

/** nft's TYPE_BITS: a concatenation's key type packs each component's datatype in 6 bits. */
export const CONCAT_TYPE_BITS = 6;
