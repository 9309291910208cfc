/** Plan → text, one line per action: "+" create, "~" change, "-" delete. */
import type { Action, Plan } from './plan.js';

function where(a: { container?: string }): string {
  return a.container ? ` in container ${a.container}` : '';
}

export function describe(a: Action): string {
  switch (a.op) {
    case 'sysctl.set':
      return `~ sysctl ${a.key} = ${a.value}${a.from !== undefined ? ` (was ${a.from})` : ''}`;
    case 'netns.create':
      return `+ namespace ${a.name} (container ${a.container})`;
    case 'netns.delete':
      return `- namespace ${a.name} (container ${a.container}, with its interfaces)`;
    case 'bridge.create':
      return `+ bridge ${a.name} (network ${a.network}${a.mtu ? `, mtu ${a.mtu}` : ''})`;
    case 'bridge.delete':
      return `- bridge ${a.name} (network ${a.network})`;
    case 'veth.create':
      return `+ veth ${a.name} ↔ ${a.peer} in container ${a.container} (network ${a.network}${a.master ? `, bridge ${a.master}` : ''}${a.mac ? `, mac ${a.mac}` : ''})`;
    case 'veth.delete':
      return `- veth ${a.name} (container ${a.container}, network ${a.network})`;
    case 'link.set': {
      const parts = Object.entries(a.change).map(([k, v]) => `${k} ${v}`);
      return `~ link ${a.name}${where(a)}: ${parts.join(', ')}`;
    }
    case 'addr.add':
      return `+ address ${a.cidr} on ${a.dev}${where(a)}`;
    case 'addr.del':
      return `- address ${a.cidr} on ${a.dev}${where(a)}`;
    case 'route.add':
      return `+ route default via ${a.via} dev ${a.dev} in container ${a.container}`;
    case 'route.del':
      return `- route default via ${a.via} dev ${a.dev} in container ${a.container}`;
    case 'nft.table.create':
      return `+ nft table inet ${a.table}`;
    case 'nft.table.replace':
      return `~ nft table inet ${a.table} (rules changed: replaced atomically)`;
    case 'nft.table.delete':
      return `- nft table inet ${a.table}`;
    case 'nft.element.add':
      return `+ nft element ${a.key} in @${a.set}`;
    case 'nft.element.delete':
      return `- nft element ${a.key} in @${a.set}`;
    case 'file.write':
      return `${a.exists ? '~' : '+'} file ${a.path}`;
    case 'file.delete':
      return `- file ${a.path}`;
    case 'resolver.reload': {
      const what = [
        a.networks ? `dns for ${a.networks} network${a.networks === 1 ? '' : 's'}` : '',
        a.proxies ? `${a.proxies} userland prox${a.proxies === 1 ? 'y' : 'ies'}` : '',
      ].filter(Boolean);
      return `${a.start ? '+' : '~'} resolver process: ${what.join(', ')} (${a.start ? 'start' : 'reload'})`;
    }
    case 'resolver.stop':
      return '- resolver process';
  }
}

export function renderText(plan: Plan): string {
  if (plan.actions.length === 0) return 'No changes. The kernel matches the manifests.\n';
  const lines = plan.actions.map(describe);
  const n = plan.actions.length;
  return `${lines.join('\n')}\n\nPlan: ${n} action${n === 1 ? '' : 's'}.\n`;
}

export function renderJson(plan: Plan): string {
  return `${JSON.stringify({ actions: plan.actions }, null, 2)}\n`;
}
