import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { ObjectError } from '../../src/cluster/model.js';

/** A state built from a list of objects, as the sources feed one; invalid ones are reported and skipped, never fatal. */
export function loadState(objects: KubeObject[], nodeName: string): { state: ClusterState; errors: ObjectError[] } {
  const state = new ClusterState(nodeName);
  const errors: ObjectError[] = [];
  for (const object of objects) {
    try {
      state.apply(object);
    } catch (error) {
      if (!(error instanceof ObjectError)) throw error;
      errors.push(error);
    }
  }
  return { state, errors };
}
