// kube-proxy's --feature-gates (and the config file's featureGates), as Kubernetes 1.34 has them.
//
// kube-proxy registers every gate of k8s.io/kubernetes/pkg/features (which relists the generic
// apiserver's, apiextensions', kube-controller-manager's and zpages' gates and adds client-go's) plus
// component-base's logs and metrics gates (cmd/kube-proxy/app/server.go), and AllAlpha/AllBeta.
// component-base/featuregate refuses a name it does not know and a locked gate set away from its
// default, with the messages below; every other gate is accepted, most of them gating other
// components and changing nothing in kube-proxy.
//
// The table is each gate's spec at 1.34: the last of pkg/features' VersionedSpecs at or before 1.34
// (read from the 1.35 source, which keeps the history), gates that 1.35 removed but 1.34 still had
// (AllowServiceLBStatusOnNonLB, CronJobsScheduledAnnotation, LoadBalancerIPMode, PodIndexLabel,
// SizeMemoryBackedVolumes, StatefulSetAutoDeletePVC, StrictCostEnforcementFor*), client-go's
// features/known_features.go, component-base logs/api/v1 and metrics/features at 1.34.

export type GateStage = 'Alpha' | 'Beta' | 'GA' | 'Deprecated';

export interface GateSpec {
  default: boolean;
  stage: GateStage;
  locked: boolean;
}

type Row = [name: string, enabledByDefault: boolean, stage: GateStage, locked?: 'locked'];

const ROWS: Row[] = [
  ['AllAlpha', false, 'Alpha'],
  ['AllBeta', false, 'Beta'],
  // pkg/features
  ['AllowDNSOnlyNodeCSR', false, 'Deprecated'],
  ['AllowInsecureKubeletCertificateSigningRequests', false, 'Deprecated'],
  ['AllowOverwriteTerminationGracePeriodSeconds', false, 'Deprecated'],
  ['AllowServiceLBStatusOnNonLB', false, 'Deprecated', 'locked'],
  ['AnyVolumeDataSource', true, 'GA', 'locked'],
  ['AuthorizeNodeWithSelectors', true, 'GA', 'locked'],
  ['CPUManagerPolicyAlphaOptions', false, 'Alpha'],
  ['CPUManagerPolicyBetaOptions', true, 'Beta'],
  ['CPUManagerPolicyOptions', true, 'GA', 'locked'],
  ['CSIMigrationPortworx', true, 'GA', 'locked'],
  ['CSIVolumeHealth', false, 'Alpha'],
  ['ClearingNominatedNodeNameAfterBinding', false, 'Alpha'],
  ['ClusterTrustBundle', false, 'Beta'],
  ['ClusterTrustBundleProjection', false, 'Beta'],
  ['ContainerCheckpoint', true, 'Beta'],
  ['ContainerRestartRules', false, 'Alpha'],
  ['ContainerStopSignals', false, 'Alpha'],
  ['CronJobsScheduledAnnotation', true, 'GA', 'locked'],
  ['CrossNamespaceVolumeDataSource', false, 'Alpha'],
  ['CustomCPUCFSQuotaPeriod', false, 'Alpha'],
  ['DRAAdminAccess', true, 'Beta'],
  ['DRAConsumableCapacity', false, 'Alpha'],
  ['DRADeviceBindingConditions', false, 'Alpha'],
  ['DRADeviceTaints', false, 'Alpha'],
  ['DRAExtendedResource', false, 'Alpha'],
  ['DRAPartitionableDevices', false, 'Alpha'],
  ['DRAPrioritizedList', true, 'Beta'],
  ['DRAResourceClaimDeviceStatus', true, 'Beta'],
  ['DRASchedulerFilterTimeout', true, 'Beta'],
  ['DeploymentReplicaSetTerminatingReplicas', false, 'Alpha'],
  ['DisableAllocatorDualWrite', true, 'GA'],
  ['DisableCPUQuotaWithExclusiveCPUs', true, 'Beta'],
  ['DisableNodeKubeProxyVersion', true, 'Deprecated'],
  ['DynamicResourceAllocation', true, 'GA'],
  ['EnvFiles', false, 'Alpha'],
  ['EventedPLEG', false, 'Alpha'],
  ['ExecProbeTimeout', true, 'GA'],
  ['ExternalServiceAccountTokenSigner', true, 'Beta'],
  ['GitRepoVolumeDriver', false, 'Deprecated'],
  ['GracefulNodeShutdown', true, 'Beta'],
  ['GracefulNodeShutdownBasedOnPodPriority', true, 'Beta'],
  ['HPAConfigurableTolerance', false, 'Alpha'],
  ['HPAScaleToZero', false, 'Alpha'],
  ['HonorPVReclaimPolicy', true, 'GA', 'locked'],
  ['HostnameOverride', false, 'Alpha'],
  ['ImageMaximumGCAge', true, 'Beta'],
  ['ImageVolume', false, 'Beta'],
  ['InPlacePodVerticalScaling', true, 'Beta'],
  ['InPlacePodVerticalScalingAllocatedStatus', false, 'Deprecated'],
  ['InPlacePodVerticalScalingExclusiveCPUs', false, 'Alpha'],
  ['InPlacePodVerticalScalingExclusiveMemory', false, 'Alpha'],
  ['InTreePluginPortworxUnregister', false, 'Alpha'],
  ['JobBackoffLimitPerIndex', true, 'GA', 'locked'],
  ['JobManagedBy', true, 'Beta'],
  ['JobPodReplacementPolicy', true, 'GA', 'locked'],
  ['JobSuccessPolicy', true, 'GA', 'locked'],
  ['KubeletCgroupDriverFromCRI', true, 'GA', 'locked'],
  ['KubeletCrashLoopBackOffMax', false, 'Alpha'],
  ['KubeletEnsureSecretPulledImages', false, 'Alpha'],
  ['KubeletFineGrainedAuthz', true, 'Beta'],
  ['KubeletInUserNamespace', false, 'Alpha'],
  ['KubeletPSI', true, 'Beta'],
  ['KubeletPodResourcesDynamicResources', true, 'Beta'],
  ['KubeletPodResourcesGet', true, 'Beta'],
  ['KubeletPodResourcesListUseActivePods', true, 'Deprecated'],
  ['KubeletRegistrationGetOnExistsOnly', false, 'Deprecated'],
  ['KubeletSeparateDiskGC', true, 'Beta'],
  ['KubeletServiceAccountTokenForCredentialProviders', true, 'Beta'],
  ['KubeletTracing', true, 'GA', 'locked'],
  ['LoadBalancerIPMode', true, 'GA', 'locked'],
  ['LocalStorageCapacityIsolationFSQuotaMonitoring', false, 'Beta'],
  ['LogarithmicScaleDown', true, 'GA', 'locked'],
  ['MatchLabelKeysInPodAffinity', true, 'GA', 'locked'],
  ['MatchLabelKeysInPodTopologySpread', true, 'Beta'],
  ['MatchLabelKeysInPodTopologySpreadSelectorMerge', true, 'Beta'],
  ['MaxUnavailableStatefulSet', false, 'Alpha'],
  ['MemoryManager', true, 'GA', 'locked'],
  ['MemoryQoS', false, 'Alpha'],
  ['MultiCIDRServiceAllocator', true, 'GA', 'locked'],
  ['MutableCSINodeAllocatableCount', false, 'Beta'],
  ['NFTablesProxyMode', true, 'GA', 'locked'],
  ['NodeInclusionPolicyInPodTopologySpread', true, 'GA', 'locked'],
  ['NodeLogQuery', false, 'Beta'],
  ['NodeSwap', true, 'GA', 'locked'],
  ['NominatedNodeNameForExpectation', false, 'Alpha'],
  ['OrderedNamespaceDeletion', true, 'GA', 'locked'],
  ['PodAndContainerStatsFromCRI', false, 'Alpha'],
  ['PodCertificateRequest', false, 'Alpha'],
  ['PodDeletionCost', true, 'Beta'],
  ['PodIndexLabel', true, 'GA', 'locked'],
  ['PodLevelResources', true, 'Beta'],
  ['PodLifecycleSleepAction', true, 'GA', 'locked'],
  ['PodLifecycleSleepActionAllowZero', true, 'GA', 'locked'],
  ['PodLogsQuerySplitStreams', false, 'Alpha'],
  ['PodObservedGenerationTracking', true, 'Beta'],
  ['PodReadyToStartContainersCondition', true, 'Beta'],
  ['PodSchedulingReadiness', true, 'GA', 'locked'],
  ['PodTopologyLabelsAdmission', false, 'Alpha'],
  ['PortForwardWebsockets', true, 'Beta'],
  ['PreferSameTrafficDistribution', true, 'Beta'],
  ['PreventStaticPodAPIReferences', true, 'Beta'],
  ['ProcMountType', true, 'Beta'],
  ['QOSReserved', false, 'Alpha'],
  ['RecoverVolumeExpansionFailure', true, 'GA', 'locked'],
  ['RecursiveReadOnlyMounts', true, 'GA', 'locked'],
  ['ReduceDefaultCrashLoopBackOffDecay', false, 'Alpha'],
  ['RelaxedDNSSearchValidation', true, 'GA', 'locked'],
  ['RelaxedEnvironmentVariableValidation', true, 'GA', 'locked'],
  ['RelaxedServiceNameValidation', false, 'Alpha'],
  ['ReloadKubeletServerCertificateFile', true, 'Beta'],
  ['ResourceHealthStatus', false, 'Alpha'],
  ['RotateKubeletServerCertificate', true, 'Beta'],
  ['RuntimeClassInImageCriApi', false, 'Alpha'],
  ['SELinuxChangePolicy', true, 'Beta'],
  ['SELinuxMount', false, 'Beta'],
  ['SELinuxMountReadWriteOncePod', true, 'Beta'],
  ['SchedulerAsyncAPICalls', false, 'Beta'],
  ['SchedulerAsyncPreemption', true, 'Beta'],
  ['SchedulerPopFromBackoffQ', true, 'Beta'],
  ['SchedulerQueueingHints', true, 'GA', 'locked'],
  ['SeparateTaintEvictionController', true, 'GA', 'locked'],
  ['ServiceAccountNodeAudienceRestriction', true, 'Beta'],
  ['ServiceAccountTokenJTI', true, 'GA', 'locked'],
  ['ServiceAccountTokenNodeBinding', true, 'GA', 'locked'],
  ['ServiceAccountTokenNodeBindingValidation', true, 'GA', 'locked'],
  ['ServiceAccountTokenPodNodeInfo', true, 'GA', 'locked'],
  ['ServiceTrafficDistribution', true, 'GA', 'locked'],
  ['SidecarContainers', true, 'GA', 'locked'],
  ['SizeMemoryBackedVolumes', true, 'GA', 'locked'],
  ['StatefulSetAutoDeletePVC', true, 'GA', 'locked'],
  ['StatefulSetSemanticRevisionComparison', true, 'Beta'],
  ['StorageCapacityScoring', false, 'Alpha'],
  ['StorageNamespaceIndex', true, 'Deprecated'],
  ['StorageVersionMigrator', false, 'Alpha'],
  ['StreamingCollectionEncodingToJSON', true, 'GA', 'locked'],
  ['StreamingCollectionEncodingToProtobuf', true, 'GA', 'locked'],
  ['StrictIPCIDRValidation', false, 'Alpha'],
  ['SupplementalGroupsPolicy', true, 'Beta'],
  ['SystemdWatchdog', true, 'Beta'],
  ['TopologyAwareHints', true, 'GA', 'locked'],
  ['TopologyManagerPolicyAlphaOptions', false, 'Alpha'],
  ['TopologyManagerPolicyBetaOptions', true, 'Beta'],
  ['TopologyManagerPolicyOptions', true, 'GA'],
  ['TranslateStreamCloseWebsocketRequests', true, 'Beta'],
  ['UserNamespacesSupport', true, 'Beta'],
  ['VolumeAttributesClass', true, 'GA'],
  ['WinDSR', true, 'GA', 'locked'],
  ['WinOverlay', true, 'GA', 'locked'],
  ['WindowsCPUAndMemoryAffinity', false, 'Alpha'],
  ['WindowsGracefulNodeShutdown', true, 'Beta'],
  ['WindowsHostNetwork', false, 'Deprecated'],
  // relisted in pkg/features: apiextensions-apiserver, generic apiserver, kube-controller-manager, zpages
  ['CRDValidationRatcheting', true, 'GA', 'locked'],
  ['CustomResourceFieldSelectors', true, 'GA', 'locked'],
  ['APIResponseCompression', true, 'Beta'],
  ['APIServerIdentity', true, 'Beta'],
  ['APIServerTracing', true, 'GA', 'locked'],
  ['APIServingWithRoutine', false, 'Alpha'],
  ['AggregatedDiscoveryRemoveBetaType', true, 'Deprecated'],
  ['AllowParsingUserUIDFromCertAuth', true, 'Beta'],
  ['AllowUnsafeMalformedObjectDeletion', false, 'Alpha'],
  ['AnonymousAuthConfigurableEndpoints', true, 'GA', 'locked'],
  ['AuthorizeWithSelectors', true, 'GA', 'locked'],
  ['BtreeWatchCache', true, 'GA', 'locked'],
  ['CBORServingAndStorage', false, 'Alpha'],
  ['ConcurrentWatchObjectDecode', false, 'Beta'],
  ['ConsistentListFromCache', true, 'GA', 'locked'],
  ['CoordinatedLeaderElection', false, 'Beta'],
  ['DeclarativeValidation', true, 'Beta'],
  ['DeclarativeValidationTakeover', false, 'Beta'],
  ['DetectCacheInconsistency', true, 'Beta'],
  ['KMSv1', false, 'Deprecated'],
  ['ListFromCacheSnapshot', true, 'Beta'],
  ['MutatingAdmissionPolicy', false, 'Beta'],
  ['OpenAPIEnums', true, 'Beta'],
  ['RemoteRequestHeaderUID', true, 'Beta'],
  ['ResilientWatchCacheInitialization', true, 'GA', 'locked'],
  ['RetryGenerateName', true, 'GA', 'locked'],
  ['SeparateCacheWatchRPC', false, 'Deprecated'],
  ['SizeBasedListCostEstimate', true, 'Beta'],
  ['StorageVersionAPI', false, 'Alpha'],
  ['StorageVersionHash', true, 'Beta'],
  ['StrictCostEnforcementForVAP', true, 'GA', 'locked'],
  ['StrictCostEnforcementForWebhooks', true, 'GA', 'locked'],
  ['StructuredAuthenticationConfiguration', true, 'GA', 'locked'],
  ['StructuredAuthenticationConfigurationEgressSelector', true, 'Beta'],
  ['StructuredAuthorizationConfiguration', true, 'GA', 'locked'],
  ['TokenRequestServiceAccountUIDValidation', true, 'Beta'],
  ['UnauthenticatedHTTP2DOSMitigation', true, 'Beta'],
  ['UnknownVersionInteroperabilityProxy', false, 'Alpha'],
  ['WatchCacheInitializationPostStartHook', false, 'Beta'],
  ['WatchFromStorageWithoutResourceVersion', false, 'Deprecated', 'locked'],
  ['WatchList', true, 'Beta'],
  ['CloudControllerManagerWebhook', false, 'Alpha'],
  ['ComponentFlagz', false, 'Alpha'],
  ['ComponentStatusz', false, 'Alpha'],
  // client-go, registered through pkg/features
  ['ClientsAllowCBOR', false, 'Alpha'],
  ['ClientsPreferCBOR', false, 'Alpha'],
  ['InOrderInformers', true, 'Beta'],
  ['InformerResourceVersion', false, 'Alpha'],
  ['WatchListClient', false, 'Beta'],
  // component-base: logs/api/v1 and metrics/features
  ['ContextualLogging', true, 'Beta'],
  ['LoggingAlphaOptions', false, 'Alpha'],
  ['LoggingBetaOptions', true, 'Beta'],
  ['ComponentSLIs', true, 'GA', 'locked'],
];

export const FEATURE_GATES: ReadonlyMap<string, GateSpec> = new Map(
  ROWS.map(([name, enabledByDefault, stage, locked]) => [name, { default: enabledByDefault, stage, locked: locked === 'locked' }]),
);

/**
 * Gates whose behaviour kubenft does not have, with why: accepted at their default only. Every
 * other gate kube-proxy acts on is either locked or switches kubenft too (GATES_ACTED_ON).
 */
export const GATES_REFUSED: ReadonlyMap<string, string> = new Map([
  ['ComponentFlagz', 'kubenft serves no /flagz endpoint'],
  ['ComponentStatusz', 'kubenft serves no /statusz endpoint'],
  ['ClientsAllowCBOR', 'kubenft\'s API client speaks JSON only'],
  ['ClientsPreferCBOR', 'kubenft\'s API client speaks JSON only'],
  ['WatchListClient', 'kubenft\'s API client lists and then watches; it has no streaming watch-list'],
]);

/** Gates that change what kubenft does, and how. */
export const GATES_ACTED_ON: ReadonlyMap<string, string> = new Map([
  ['PreferSameTrafficDistribution', 'off: EndpointSlice forNodes hints are ignored (PreferSameNode falls back to zone hints), as kube-proxy drops them'],
  ['AllAlpha', 'sets every Alpha gate not given by name'],
  ['AllBeta', 'sets every Beta gate not given by name'],
]);

/**
 * component-base/featuregate's checks for one given gate, with its messages (unsafeSetFromMap);
 * undefined when kube-proxy accepts it.
 */
export function featureGateError(name: string, enabled: boolean): string | undefined {
  const spec = FEATURE_GATES.get(name);
  if (!spec) return `unrecognized feature gate: ${name}`;
  if (spec.locked && spec.default !== enabled) return `cannot set feature gate ${name} to ${enabled}, feature is locked to ${spec.default}`;
  return undefined;
}

/** A gate's value: given by name, else by AllAlpha/AllBeta for its stage, else its default. */
export function featureEnabled(given: Readonly<Record<string, boolean>>, name: string): boolean {
  const spec = FEATURE_GATES.get(name);
  if (!spec) throw new Error(`feature gate ${name} is not in the table`);
  if (given[name] !== undefined) return given[name];
  if (!spec.locked && spec.stage === 'Alpha' && given.AllAlpha !== undefined) return given.AllAlpha;
  if (!spec.locked && spec.stage === 'Beta' && given.AllBeta !== undefined) return given.AllBeta;
  return spec.default;
}

/** Why kubenft cannot run with these gates (a gate it does not implement turned on), or undefined. */
export function unimplementedGate(given: Readonly<Record<string, boolean>>): string | undefined {
  for (const [name, reason] of GATES_REFUSED) {
    if (featureEnabled(given, name) === FEATURE_GATES.get(name)!.default) continue;
    const by = given[name] === undefined ? ` (set by ${FEATURE_GATES.get(name)!.stage === 'Alpha' ? 'AllAlpha' : 'AllBeta'}; give ${name}=${FEATURE_GATES.get(name)!.default} to keep it off)` : '';
    return `${name}=${featureEnabled(given, name)} is not supported by kubenft: ${reason}${by}`;
  }
  return undefined;
}
