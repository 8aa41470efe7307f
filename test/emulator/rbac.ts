// RBAC authorization (rbac.authorization.k8s.io/v1) for service-account users: the union of
// the rules of every Role/ClusterRole bound to the user, as the RBAC authorizer evaluates them.
export interface User { name: string; groups: string[] }

export interface Attributes {
  verb: string;
  apiGroup: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

interface Rule { verbs?: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[] }

function subjectMatches(subject: any, user: User, bindingNamespace?: string): boolean {
  switch (subject?.kind) {
    case 'User': return subject.name === user.name;
    case 'Group': return user.groups.includes(subject.name);
    case 'ServiceAccount': return user.name === `system:serviceaccount:${subject.namespace ?? bindingNamespace}:${subject.name}`;
    default: return false;
  }
}

export function ruleAllows(rule: Rule, a: Attributes): boolean {
  const verbs = rule.verbs ?? [];
  if (!verbs.includes('*') && !verbs.includes(a.verb)) return false;
  const groups = rule.apiGroups ?? [];
  if (!groups.includes('*') && !groups.includes(a.apiGroup)) return false;
  const resources = rule.resources ?? [];
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resOk = resources.some((r) => r === '*' || r === combined || (a.subresource ? r === `*/${a.subresource}` : false));
  if (!resOk) return false;
  const names = rule.resourceNames ?? [];
  if (names.length === 0) return true;
  return a.name !== undefined && names.includes(a.name);
}

/** lookup(kind, namespace, name) returns stored RBAC objects. */
export function authorize(user: User, a: Attributes, list: (resource: string, namespace?: string) => any[]): boolean {
  const clusterRoles = new Map(list('clusterroles').map((r) => [r.metadata.name, r]));
  const rulesOf = (ref: any, ns?: string): Rule[] => {
    if (ref?.kind === 'ClusterRole') return clusterRoles.get(ref.name)?.rules ?? [];
    if (ref?.kind === 'Role' && ns) return list('roles', ns).find((r) => r.metadata.name === ref.name)?.rules ?? [];
    return [];
  };
  for (const b of list('clusterrolebindings')) {
    if ((b.subjects ?? []).some((s: any) => subjectMatches(s, user))) {
      if (rulesOf(b.roleRef).some((r) => ruleAllows(r, a))) return true;
    }
  }
  if (a.namespace) {
    for (const b of list('rolebindings', a.namespace)) {
      if ((b.subjects ?? []).some((s: any) => subjectMatches(s, user, a.namespace))) {
        if (rulesOf(b.roleRef, a.namespace).some((r) => ruleAllows(r, a))) return true;
      }
    }
  }
  return false;
}

/** The authorizer's "cannot" sentence (k8s.io/apiserver forbiddenMessage). */
export function forbiddenReason(user: User, a: Attributes): string {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  if (a.namespace) return `User ${JSON.stringify(user.name)} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.apiGroup)} in the namespace ${JSON.stringify(a.namespace)}`;
  return `User ${JSON.stringify(user.name)} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.apiGroup)} at the cluster scope`;
}
